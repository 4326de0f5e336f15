#!/usr/bin/env python3
"""Builds the benchmark images from a base and an app rootfs (read-only; never modified).

usage: make-bench-image.py BASE APP OUT

OUT/two-layer/        OCI layout, tag bench:latest: layer 1 = BASE, layer 2 = APP minus BASE
                      (new and changed entries, whiteouts for removed ones), both tar+gzip (-6)
OUT/two-layer.tar     the same as an OCI archive (what `ctr images import` takes)
OUT/base/, OUT/app/   single-layer OCI layouts of BASE and of APP (for the dedup figure)
"""
import gzip, hashlib, io, json, os, shutil, stat, subprocess, sys, tarfile

def tar_tree(root, entries, whiteouts=()):
    """A PAX tar of `entries` (relative paths, parents first) under `root`, plus whiteouts."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for rel in entries:
            path = os.path.join(root, rel)
            info = t.gettarinfo(path, arcname=rel)
            info.uname = info.gname = ""
            if info.isreg():
                with open(path, "rb") as f:
                    t.addfile(info, f)
            else:
                t.addfile(info)
        for rel in whiteouts:
            d, name = os.path.split(rel)
            info = tarfile.TarInfo(os.path.join(d, ".wh." + name))
            info.mtime = 0
            t.addfile(info)
    return buf.getvalue()

def walk(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, root)] = os.lstat(path)
    return out

def same(a, b, pa, pb):
    if (stat.S_IFMT(a.st_mode), a.st_mode, a.st_uid, a.st_gid) != (stat.S_IFMT(b.st_mode), b.st_mode, b.st_uid, b.st_gid):
        return False
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(pa) == os.readlink(pb)
    if stat.S_ISREG(a.st_mode):
        if a.st_size != b.st_size:
            return False
        if a.st_mtime_ns == b.st_mtime_ns:
            return True
        with open(pa, "rb") as fa, open(pb, "rb") as fb:
            return fa.read() == fb.read()
    return True

def gz(data):
    return subprocess.run(["gzip", "-6", "-n", "-c"], input=data, capture_output=True, check=True).stdout

def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()

def layout(dest, tars, blobs, tag):
    os.makedirs(os.path.join(dest, "blobs/sha256"))
    put = lambda b: open(os.path.join(dest, "blobs/sha256", sha(b)[7:]), "wb").write(b)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha(t) for t in tars]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(b), "size": len(b)} for b in blobs]}).encode()
    for b in [config, manifest, *blobs]:
        put(b)
    open(os.path.join(dest, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": sha(manifest), "size": len(manifest),
             "annotations": {"org.opencontainers.image.ref.name": tag, "io.containerd.image.name": "docker.io/library/" + tag}}]}
    open(os.path.join(dest, "index.json"), "w").write(json.dumps(index))

def main(base, app, out):
    os.makedirs(out, exist_ok=True)
    b, a = walk(base), walk(app)
    changed = [rel for rel, st in a.items() if rel not in b or not same(b[rel], st, os.path.join(base, rel), os.path.join(app, rel))]
    keep = set(changed)
    for rel in changed:  # parents of changed entries travel with them
        d = os.path.dirname(rel)
        while d:
            keep.add(d)
            d = os.path.dirname(d)
    diff = [p for p in a if p in keep]  # walk order: parents first
    # A removed entry needs a whiteout only when its parent survives (else the parent's does).
    removed = [rel for rel in b if rel not in a and (os.path.dirname(rel) in a or "/" not in rel)]
    base_tar = tar_tree(base, list(b))
    app_diff_tar = tar_tree(app, diff, removed)
    app_tar = tar_tree(app, list(a))
    base_gz, diff_gz, app_gz = gz(base_tar), gz(app_diff_tar), gz(app_tar)
    for name in ["two-layer", "base", "app"]:
        shutil.rmtree(os.path.join(out, name), ignore_errors=True)
    layout(os.path.join(out, "two-layer"), [base_tar, app_diff_tar], [base_gz, diff_gz], "bench:latest")
    layout(os.path.join(out, "base"), [base_tar], [base_gz], "base:latest")
    layout(os.path.join(out, "app"), [app_tar], [app_gz], "app:latest")
    subprocess.run(["tar", "-C", os.path.join(out, "two-layer"), "-cf", os.path.join(out, "two-layer.tar"), "."], check=True)
    print(f"base {len(base_tar)} -> {len(base_gz)}; diff {len(app_diff_tar)} -> {len(diff_gz)} "
          f"({len(diff)} entries, {len(removed)} whiteouts); app {len(app_tar)} -> {len(app_gz)}")

if __name__ == "__main__":
    main(*sys.argv[1:4])
