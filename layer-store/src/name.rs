//! Image names as docker reads and shows them: `busybox` is stored as
//! `docker.io/library/busybox:latest` and shown as `busybox:latest`; `localhost:5000/x` keeps
//! its registry.

/// The registry a name without one belongs to.
const DEFAULT_DOMAIN: &str = "docker.io";
/// The namespace of a docker.io name of one component.
const OFFICIAL: &str = "library/";

/// Why a name is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
#[error(
    "{name:?} is not an image reference ({reason}); use [REGISTRY/]REPOSITORY[:TAG][@DIGEST] \
     with a lowercase repository"
)]
pub struct NameError {
    /// The name given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The full form of reference `name`: registry, repository and tag (`latest` when it has
/// neither tag nor digest), as the store keeps tags.
///
/// # Errors
/// `name` is empty, has an uppercase or otherwise invalid repository, or an invalid tag.
pub fn normalize(name: &str) -> Result<String, NameError> {
    let fail = |reason| NameError {
        name: name.to_owned(),
        reason,
    };
    let (rest, digest) = match name.split_once('@') {
        Some((rest, digest)) if digest.starts_with("sha256:") => (rest, Some(digest)),
        Some(_) => return Err(fail("a digest is sha256:HEX")),
        None => (name, None),
    };
    // A tag follows the last ':' after the last '/' (a ':' before that is a registry port).
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !valid {
            return Err(fail("invalid tag"));
        }
    }
    let (domain, repository) = match path.split_once('/') {
        Some((first, remainder))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first != first.to_lowercase() =>
        {
            (first, remainder.to_owned())
        }
        Some(_) => (DEFAULT_DOMAIN, path.to_owned()),
        None => (DEFAULT_DOMAIN, format!("{OFFICIAL}{path}")),
    };
    let domain = if domain == "index.docker.io" {
        DEFAULT_DOMAIN
    } else {
        domain
    };
    let repository = match repository.strip_prefix(OFFICIAL) {
        // `docker.io/busybox` is the official image too.
        None if domain == DEFAULT_DOMAIN && !repository.contains('/') => {
            format!("{OFFICIAL}{repository}")
        }
        _ => repository,
    };
    let valid_component = |c: &str| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    };
    if domain.is_empty() || !repository.split('/').all(valid_component) {
        return Err(fail("invalid repository"));
    }
    let mut out = format!("{domain}/{repository}");
    match (tag, digest) {
        (Some(tag), _) => {
            out.push(':');
            out.push_str(tag);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(digest) = digest {
        out.push('@');
        out.push_str(digest);
    }
    Ok(out)
}

/// `name` as docker shows it: without `docker.io/` and `library/`.
pub fn familiar(name: &str) -> &str {
    let Some(rest) = name.strip_prefix("docker.io/") else {
        return name;
    };
    match rest.strip_prefix(OFFICIAL) {
        Some(official) if !official.contains('/') => official,
        _ => rest,
    }
}

/// The repository and the tag of a stored name (`<none>` for a name with a digest and no tag),
/// as `docker images` shows them.
pub fn split_tag(name: &str) -> (&str, &str) {
    let name = familiar(name);
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], &name[slash + i + 1..]),
        None => (name, "<none>"),
    }
}

#[cfg(test)]
mod tests {
    use super::{familiar, normalize, split_tag};

    #[test]
    fn names_normalize_as_docker_does() {
        let cases = [
            ("busybox", "docker.io/library/busybox:latest"),
            ("myimg:da", "docker.io/library/myimg:da"),
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            (
                "index.docker.io/library/busybox:1",
                "docker.io/library/busybox:1",
            ),
            ("me/app:2", "docker.io/me/app:2"),
            ("localhost:5000/x", "localhost:5000/x:latest"),
            ("localhost/x:1", "localhost/x:1"),
            ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"),
            ("quay.io/x/y@sha256:abcd", "quay.io/x/y@sha256:abcd"),
        ];
        for (name, full) in cases {
            assert_eq!(normalize(name).as_deref(), Ok(full), "{name}");
            assert_eq!(
                normalize(full).as_deref(),
                Ok(full),
                "{full} is a fixed point"
            );
        }
        for bad in ["", "Busybox", "a:", "a:-x", "a//b", "x@md5:1", "-a"] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_show_as_docker_shows_them() {
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("docker.io/me/app:2"), "me/app:2");
        assert_eq!(
            familiar("localhost:5000/x:latest"),
            "localhost:5000/x:latest"
        );
        assert_eq!(split_tag("docker.io/library/busybox:1"), ("busybox", "1"));
        assert_eq!(
            split_tag("localhost:5000/x:latest"),
            ("localhost:5000/x", "latest")
        );
        assert_eq!(split_tag("quay.io/x@sha256:ab"), ("quay.io/x", "<none>"));
    }
}
