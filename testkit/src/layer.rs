//! Ordinary layers, built by code: a tar of regular files, as the tests of every crate need one.

/// A tar of regular files `files` (path, content), mode 0644, at a fixed mtime, in order.
pub fn files_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data)
            .expect("writing to memory");
    }
    b.into_inner().expect("writing to memory")
}
