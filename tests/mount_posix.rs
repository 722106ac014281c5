//! Real clients against a real kernel mount of a devnet sNFT: cp, rsync, tar, random writes.
//! Each test checks what a user would see, including after unmount + remount.

mod support;

use std::os::unix::fs::FileExt;
use std::path::Path;

use support::{TestDevnet, TestMount, assert_same_tree, generate_tree, sh};

#[test]
fn cp_a_of_a_tree_reads_back_identically_after_remount_and_from_another_cache() {
    let devnet = TestDevnet::start(&[]);
    let src = tempfile::tempdir().unwrap();
    generate_tree(src.path(), 1, 1000, 100 << 20);

    let mount = TestMount::mount(&devnet.config(), &[]);
    let dst = mount.token(devnet.token()).join("copy");
    sh(&format!(
        "cp -a {}/. {}",
        src.path().display(),
        dst.display()
    ));
    assert_same_tree(src.path(), &dst);

    let mount = mount.remount(&[]);
    assert_same_tree(src.path(), &mount.token(devnet.token()).join("copy"));
    drop(mount);

    // Another machine: same chain and node, nothing cached: the tree comes from BTNS.
    let other_cache = tempfile::tempdir().unwrap();
    let other = TestMount::mount(
        &devnet.config_with_cache(&other_cache.path().join("c")),
        &[],
    );
    assert_same_tree(src.path(), &other.token(devnet.token()).join("copy"));
}

/// Writes `data` at `at` and moves the mtime 10 s on: rsync's quick check compares whole
/// seconds, so a change made within the second of the first copy would look unchanged.
fn changed(path: &std::path::Path, data: &[u8], at: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_at(data, at).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(10))
        .unwrap();
}

#[test]
fn rsync_twice_transfers_nothing_the_second_time_and_inplace_updates_land() {
    let devnet = TestDevnet::start(&[]);
    let src = tempfile::tempdir().unwrap();
    generate_tree(src.path(), 2, 300, 3 << 20);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let dst = mount.token(devnet.token()).join("r");
    let (s, d) = (src.path().display(), dst.display());

    sh(&format!("rsync -a {s}/ {d}/"));
    assert_same_tree(src.path(), &dst);
    let second = sh(&format!("rsync -a --stats {s}/ {d}/"));
    assert!(
        second.contains("Number of regular files transferred: 0"),
        "second rsync transferred files:\n{second}"
    );

    // Change some files locally and push them with --inplace (writes into existing files).
    for i in [0usize, 7, 42] {
        let p = src
            .path()
            .join(format!("d{}/sub{}/file-{i:05}.dat", (i % 20) % 5, i % 20));
        changed(&p, b"CHANGED", 3);
    }
    changed(&src.path().join("big.bin"), b"tail", (3 << 20) - 4);
    sh(&format!("rsync -a --inplace {s}/ {d}/"));
    assert_same_tree(src.path(), &dst);

    let mount = mount.remount(&[]);
    assert_same_tree(src.path(), &mount.token(devnet.token()).join("r"));
}

#[test]
fn tar_extracts_into_the_mount_and_archives_out_of_it_identically() {
    let devnet = TestDevnet::start(&[]);
    let src = tempfile::tempdir().unwrap();
    generate_tree(src.path(), 3, 200, 1 << 20);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let dst = mount.token(devnet.token()).join("t");
    std::fs::create_dir(&dst).unwrap();
    sh(&format!(
        "tar -C {} -cf - . | tar -C {} -xpf -",
        src.path().display(),
        dst.display()
    ));
    assert_same_tree(src.path(), &dst);

    let out = tempfile::tempdir().unwrap();
    sh(&format!(
        "tar -C {} -cf - . | tar -C {} -xpf -",
        dst.display(),
        out.path().display()
    ));
    assert_same_tree(src.path(), out.path());
}

#[test]
fn random_writes_match_a_local_reference_file_also_after_remount() {
    use rand::{Rng, RngCore, SeedableRng};
    let devnet = TestDevnet::start(&[]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let local = tempfile::tempdir().unwrap();
    let reference = local.path().join("ref.bin");
    let target = mount.token(devnet.token()).join("random.bin");

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(p)
            .unwrap()
    };
    let (mut fr, mut ft) = (open(&reference), open(&target));
    let mut buf = vec![0u8; 200_000];
    for op in 0..3000 {
        match rng.random_range(0..100) {
            0..=79 => {
                let off = rng.random_range(0..8u64 << 20);
                let len = rng.random_range(1..buf.len());
                rng.fill_bytes(&mut buf[..len]);
                fr.write_all_at(&buf[..len], off).unwrap();
                ft.write_all_at(&buf[..len], off).unwrap();
            }
            80..=89 => {
                let size = rng.random_range(0..10u64 << 20);
                fr.set_len(size).unwrap();
                ft.set_len(size).unwrap();
            }
            90..=94 => {
                // Reopen: each close is a point the file must be complete at.
                drop((fr, ft));
                fr = open(&reference);
                ft = open(&target);
            }
            _ => {
                let off = rng.random_range(0..10u64 << 20);
                let mut a = vec![0u8; 4096];
                let mut b = vec![0u8; 4096];
                let na = fr.read_at(&mut a, off).unwrap();
                let nb = ft.read_at(&mut b, off).unwrap();
                assert_eq!(
                    (na, &a[..na]),
                    (nb, &b[..nb]),
                    "read at {off} differs after op {op}"
                );
            }
        }
    }
    drop((fr, ft));
    assert!(
        support::files_equal(&reference, &target),
        "content differs before remount"
    );
    let mount = mount.remount(&[]);
    assert!(
        support::files_equal(&reference, &mount.token(devnet.token()).join("random.bin")),
        "content differs after remount"
    );
}

/// What a user sees of the sNFT directory `root` and the special files in it.
fn root_and_specials(root: &Path) -> (String, String) {
    let r = root.display();
    (
        sh(&format!(
            "TZ=UTC stat -c '%a %u %g %y' {r} && getfattr --only-values -n user.origin {r}"
        )),
        sh(&format!("cd {r} && stat -c '%n %F %a %t:%T %s' pipe null")),
    )
}

#[test]
fn snft_directory_attributes_and_special_files_survive_remount_from_a_fresh_cache() {
    let devnet = TestDevnet::start(&[]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let root = mount.token(devnet.token());
    let r = root.display();
    // Attributes of the sNFT directory itself, the last change being its mtime.
    sh(&format!(
        "chmod 1750 {r} && chown 123:456 {r} && setfattr -n user.origin -v backup {r} \
         && mkfifo -m 640 {r}/pipe && mknod -m 600 {r}/null c 1 3 \
         && touch -d '2001-02-03 04:05:06.789 UTC' {r}"
    ));
    let before = root_and_specials(&root);
    assert_eq!(
        before,
        (
            "1750 123 456 2001-02-03 04:05:06.789000000 +0000\nbackup".to_string(),
            "pipe fifo 640 0:0 0\nnull character special file 600 1:3 0\n".to_string()
        )
    );

    // A FIFO in the mount connects a writer and a reader (the kernel does the piping).
    let piped = sh(&format!(
        "(echo through-the-pipe > {r}/pipe &) ; timeout 20 cat {r}/pipe"
    ));
    assert_eq!(piped, "through-the-pipe\n");

    let mount = mount.remount(&[]);
    assert_eq!(root_and_specials(&root), before, "after remount");
    drop(mount);

    // Another machine: nothing cached, everything comes from the manifests on the node.
    let other_cache = tempfile::tempdir().unwrap();
    let other = TestMount::mount(
        &devnet.config_with_cache(&other_cache.path().join("c")),
        &[],
    );
    assert_eq!(
        root_and_specials(&other.token(devnet.token())),
        before,
        "from a fresh cache"
    );
}

/// Names the kernel may pass: any bytes but `/` and NUL, 1 to 255 of them. Every byte
/// 0x01–0xFF but `/` as a one-byte name (but `.`) and inside a name; invalid UTF-8,
/// Latin-1, newlines, control and bidi characters; exactly 255 bytes.
fn any_byte_names() -> Vec<Vec<u8>> {
    let mut names: Vec<Vec<u8>> = vec![
        b"\xff\xfe".to_vec(),
        b"r\xe9sum\xe9.txt".to_vec(),
        b"line\nbreak".to_vec(),
        b"tab\tand\rcr".to_vec(),
        b"\x1b[31mred\x1b[0m".to_vec(),
        b"\xe2\x80\xaeevil.txt".to_vec(),
        b"back\\slash".to_vec(),
        vec![b'a'; 255],
        vec![0xe9; 255],
        [b"\xc3\xa9".repeat(127), b"x".to_vec()].concat(),
    ];
    for b in 1..=255u8 {
        if b == b'/' {
            continue;
        }
        names.push(vec![b'e', b, b'x']);
        if b != b'.' {
            names.push(vec![b]);
        }
    }
    names
}

fn os(bytes: &[u8]) -> &std::ffi::OsStr {
    std::os::unix::ffi::OsStrExt::from_bytes(bytes)
}

/// The names in `dir`, as bytes, sorted.
fn listed(dir: &Path) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let mut v: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    v.sort();
    v
}

fn cstr(p: &Path) -> std::ffi::CString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn set_xattr(p: &Path, name: &[u8], value: &[u8]) -> std::io::Result<()> {
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a buffer of the length given, all alive here.
    let rc = unsafe {
        libc::setxattr(
            cstr(p).as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn get_xattr(p: &Path, name: &[u8]) -> Vec<u8> {
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: as in `set_xattr`; the kernel writes at most `buf.len()` bytes.
    let n = unsafe {
        libc::getxattr(
            cstr(p).as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    assert!(n >= 0, "getxattr: {}", std::io::Error::last_os_error());
    buf.truncate(n as usize);
    buf
}

fn list_xattrs(p: &Path) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: as in `get_xattr`.
    let n = unsafe { libc::listxattr(cstr(p).as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf[..n as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// A source tree whose every name is one of [`any_byte_names`], with a subdirectory and
/// symlinks whose names and targets are not UTF-8.
fn odd_names_tree(root: &Path) {
    for (i, name) in any_byte_names().iter().enumerate() {
        std::fs::write(
            root.join(os(name)),
            [name.as_slice(), &i.to_le_bytes()].concat(),
        )
        .unwrap();
    }
    let sub = root.join(os(b"d\xff\xfe")).join(os(b"r\xe9pertoire\n"));
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(sub.join(os(b"\x01\x7f\x80")), b"deep").unwrap();
    std::os::unix::fs::symlink(os(b"../\xff\xfe"), sub.join(os(b"lien\xff"))).unwrap();
    std::os::unix::fs::symlink(os(b"target\nwith\xe9"), root.join(os(b"s\xe9"))).unwrap();
}

#[test]
fn names_of_any_bytes_but_slash_and_nul_come_back_byte_for_byte_also_on_another_machine() {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileTypeExt;
    let devnet = TestDevnet::start(&[]);
    let cache = tempfile::tempdir().unwrap();
    let cfg = devnet.config_with_cache(&cache.path().join("c"));
    let mount = TestMount::mount_with_env(&cfg, &[], &[("PXFS_LOG", "pxfs=debug")]);
    let root = mount.token(devnet.token());

    // rsync -a of a tree holding them, compared byte for byte (names and content).
    let src = tempfile::tempdir().unwrap();
    odd_names_tree(src.path());
    let dst = root.join("copy");
    sh(&format!(
        "rsync -a {}/ {}/",
        src.path().display(),
        dst.display()
    ));
    assert_same_tree(src.path(), &dst);
    assert_eq!(listed(&dst), listed(src.path()));

    // Each namespace call with such names, through the kernel.
    let d = root.join(os(b"ops\xff"));
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join(os(b"\xfe\nnew")), b"created").unwrap();
    let fifo = cstr(&d.join(os(b"fifo\xe9")));
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink(os(b"\xfe\nnew"), d.join(os(b"sym\x80"))).unwrap();
    std::fs::hard_link(d.join(os(b"\xfe\nnew")), d.join(os(b"link\xc0"))).unwrap();
    std::fs::rename(d.join(os(b"link\xc0")), d.join(os(b"renamed\xc1"))).unwrap();
    set_xattr(&d.join(os(b"\xfe\nnew")), b"user.\xff\xfe", b"v\xff\x00").unwrap();
    let want_ops: Vec<Vec<u8>> = vec![
        b"fifo\xe9".to_vec(),
        b"renamed\xc1".to_vec(),
        b"sym\x80".to_vec(),
        b"\xfe\nnew".to_vec(),
    ];
    let check_ops = |d: &Path| {
        assert_eq!(listed(d), want_ops);
        assert_eq!(
            std::fs::read(d.join(os(b"renamed\xc1"))).unwrap(),
            b"created"
        );
        assert_eq!(
            std::fs::read_link(d.join(os(b"sym\x80")))
                .unwrap()
                .as_os_str()
                .as_bytes(),
            b"\xfe\nnew"
        );
        assert_eq!(
            get_xattr(&d.join(os(b"\xfe\nnew")), b"user.\xff\xfe"),
            b"v\xff\x00"
        );
        assert!(list_xattrs(&d.join(os(b"\xfe\nnew"))).contains(&b"user.\xff\xfe".to_vec()));
        assert!(
            std::fs::symlink_metadata(d.join(os(b"fifo\xe9")))
                .unwrap()
                .file_type()
                .is_fifo()
        );
    };
    check_ops(&d);

    // 256 bytes is one too many, for every call that takes a name.
    let long = d.join(os(&[b'n'; 256]));
    let too_long = |r: std::io::Result<()>| {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::ENAMETOOLONG));
    };
    too_long(std::fs::write(&long, b"x"));
    too_long(std::fs::create_dir(&long));
    too_long(std::os::unix::fs::symlink("t", &long));
    too_long(std::fs::rename(d.join(os(b"renamed\xc1")), &long));
    too_long(std::fs::symlink_metadata(&long).map(|_| ()));

    // Logs and status show such names escaped, never as raw bytes.
    assert!(std::fs::symlink_metadata(d.join(os(b"missing\xff\xfe"))).is_err());
    let log = std::fs::read(cache.path().join("c").join("mount.log")).unwrap();
    let needle = br"missing\xff\xfe";
    assert!(
        log.windows(needle.len()).any(|w| w == needle),
        "the failed lookup is logged with its name escaped"
    );
    assert!(
        !log.iter().any(|b| *b == 0xff || *b == 0xfe),
        "raw name bytes in the log"
    );
    for args in [&["status", "--json"][..], &["status"][..]] {
        let out = std::process::Command::new(support::PXFS)
            .args(args)
            .arg("--config")
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.iter().any(|b| *b == 0xff || *b == 0xfe));
    }

    // After a remount, and on another machine (an empty cache): byte for byte again.
    let mount = mount.remount(&[]);
    let root = mount.token(devnet.token());
    assert_same_tree(src.path(), &root.join("copy"));
    check_ops(&root.join(os(b"ops\xff")));
    drop(mount);
    let other_cache = tempfile::tempdir().unwrap();
    let other = TestMount::mount(
        &devnet.config_with_cache(&other_cache.path().join("c")),
        &[],
    );
    let root = other.token(devnet.token());
    assert_same_tree(src.path(), &root.join("copy"));
    assert_eq!(listed(&root.join("copy")), listed(src.path()));
    check_ops(&root.join(os(b"ops\xff")));
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if m.is_dir() {
                pending.push(p);
            } else if m.is_file()
                && let Ok(bytes) = std::fs::read(&p)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(p.display().to_string());
            }
        }
    }
    found
}

/// Walks everything reachable from the sNFT's BTNS record through the node (the usage
/// document and every object of the public graph): (objects walked, those holding `needle`).
fn published_objects_holding(devnet: &TestDevnet, needle: &[u8]) -> (usize, Vec<String>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();
    let doc_cid = rt.block_on(client.name_resolve(&btns)).unwrap();
    let doc_bytes = rt.block_on(client.cat(&doc_cid, 0, None)).unwrap();
    let doc = pxfs::format::usage::parse_any(&doc_bytes).unwrap();
    let holds = |b: &[u8]| b.windows(needle.len()).any(|w| w == needle);
    let mut holding = Vec::new();
    if holds(&doc_bytes) {
        holding.push(doc_cid.clone());
    }
    let mut pending = vec![doc.root().to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(cid) = pending.pop() {
        if !seen.insert(cid.clone()) {
            continue;
        }
        let bytes = rt.block_on(client.cat(&cid, 0, None)).unwrap();
        if holds(&bytes) {
            holding.push(cid.clone());
        }
        if let Ok((_, lists)) = pxfs::format::envelope::public(&bytes) {
            pending.extend(lists.nodes);
            pending.extend(lists.data);
        }
    }
    (seen.len() + 1, holding)
}

/// `pxfs ARGS --config CONFIG` with the dev wallet's key: (success, stdout + stderr).
fn pxfs_with(config: &Path, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pxfs"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PXFS_PRIVATE_KEY", support::DEV_WALLET_KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn pxfs_encrypt_converts_a_plaintext_drive_in_place_and_decrypt_turns_it_back() {
    const MARK: &str = "tapir-marker-5573";
    let devnet = TestDevnet::start(&["--plaintext"]);
    let token = devnet.token().to_string();
    let cache = tempfile::tempdir().unwrap();
    let config = devnet.config_with_cache(cache.path());
    let mount = TestMount::mount(&config, &[]);
    let root = mount.token(devnet.token());
    assert_eq!(support::xattr(&root, "user.pxfs.encryption"), "none");
    let local = tempfile::tempdir().unwrap();
    let dir = local.path().join(format!("{MARK}-dir"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(format!("{MARK}.txt")), MARK).unwrap();
    let big: Vec<u8> = MARK.bytes().cycle().take(700_000).collect();
    std::fs::write(local.path().join("big"), &big).unwrap();
    std::os::unix::fs::symlink(format!("/{MARK}"), dir.join("link")).unwrap();
    std::fs::hard_link(dir.join(format!("{MARK}.txt")), local.path().join("second")).unwrap();
    sh(&format!(
        "chmod 0640 '{d}/big' && touch -d '2001-02-03 04:05:06' '{d}/second' && cp -a '{d}/.' '{r}/'",
        d = local.path().display(),
        r = root.display()
    ));
    assert_same_tree(local.path(), &root);

    // Refused while this cache's mount runs.
    let (ok, out) = pxfs_with(&config, &["encrypt", &token]);
    assert!(!ok && out.contains("unmount"), "{out}");
    drop(mount); // drains and commits
    let (_, holding) = published_objects_holding(&devnet, MARK.as_bytes());
    assert!(!holding.is_empty(), "the plaintext tree shows the marker");

    let (ok, out) = pxfs_with(&config, &["encrypt", &token]);
    assert!(ok, "{out}");
    assert!(out.contains("is now encrypted"), "{out}");
    let (objects, holding) = published_objects_holding(&devnet, MARK.as_bytes());
    assert!(holding.is_empty(), "objects hold the marker: {holding:?}");
    assert!(objects >= 5, "walked {objects} objects");
    let (ok, out) = pxfs_with(&config, &["encrypt", &token]);
    assert!(!ok && out.contains("already encrypted"), "{out}");

    // The cache that mounted the plaintext tree opens the encrypted one.
    let mount = TestMount::mount(&config, &[]);
    let root = mount.token(devnet.token());
    assert!(
        support::xattr(&root, "user.pxfs.encryption").starts_with("pxfs-aes256gcm/2 key "),
        "encrypted after pxfs encrypt"
    );
    assert_same_tree(local.path(), &root);
    drop(mount);

    let (ok, out) = pxfs_with(&config, &["decrypt", &token]);
    assert!(!ok && out.contains("--yes"), "{out}");
    let (ok, out) = pxfs_with(&config, &["decrypt", "--yes", &token]);
    assert!(ok && out.contains("is now plaintext"), "{out}");
    let fresh = tempfile::tempdir().unwrap();
    let mount = TestMount::mount(&devnet.config_with_cache(fresh.path()), &[]);
    let root = mount.token(devnet.token());
    assert_eq!(support::xattr(&root, "user.pxfs.encryption"), "none");
    assert_same_tree(local.path(), &root);
}

#[test]
fn an_encrypted_drive_shows_the_node_no_name_or_byte_and_opens_with_a_passphrase_alone() {
    const MARK: &str = "okapi-marker-2718";
    let devnet = TestDevnet::start(&[]);
    let cache = tempfile::tempdir().unwrap();
    let mount = TestMount::mount(&devnet.config_with_cache(cache.path()), &[]);
    let root = mount.token(devnet.token());
    assert!(
        support::xattr(&root, "user.pxfs.encryption").starts_with("pxfs-aes256gcm/2 key "),
        "a new devnet sNFT is encrypted"
    );
    let dir = root.join(format!("{MARK}-dir"));
    std::fs::create_dir(&dir).unwrap();
    let small = format!("{MARK} in a small file").into_bytes();
    // Larger than a batched file and than one chunk: uploaded as a stream of 3 chunks.
    let big: Vec<u8> = MARK.bytes().cycle().take(700_000).collect();
    std::fs::write(dir.join(format!("{MARK}-small")), &small).unwrap();
    std::fs::write(dir.join("big"), &big).unwrap();
    std::os::unix::fs::symlink(format!("/{MARK}/target"), dir.join("link")).unwrap();
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new("user.note").unwrap();
    // SAFETY: valid C strings and a value of the given length.
    let rc = unsafe {
        libc::setxattr(
            c.as_ptr(),
            name.as_ptr(),
            MARK.as_ptr().cast(),
            MARK.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    drop(mount); // drains and commits

    // The node's repository on disk: no block holds the marker.
    let repo = devnet.info["node_repo"]
        .as_str()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| devnet.dir.path().join("node"));
    assert!(repo.is_dir(), "{}", repo.display());
    let found = files_containing(&repo, MARK.as_bytes());
    assert!(
        found.is_empty(),
        "the marker is on the node's disk: {found:?}"
    );

    // Everything reachable from the BTNS record through the node: the usage document and
    // every object of the public graph.
    let (objects, holding) = published_objects_holding(&devnet, MARK.as_bytes());
    assert!(holding.is_empty(), "objects hold the marker: {holding:?}");
    assert!(objects >= 5, "walked {objects} objects");

    // Another machine without the wallet key: the devnet's passphrase file opens it.
    let other = tempfile::tempdir().unwrap();
    let config = devnet.config_with_cache(other.path());
    let mount = TestMount::mount_with_env(&config, &[], &[("PXFS_PRIVATE_KEY", "")]);
    let dir = mount.token(devnet.token()).join(format!("{MARK}-dir"));
    assert_eq!(
        std::fs::read(dir.join(format!("{MARK}-small"))).unwrap(),
        small
    );
    assert_eq!(std::fs::read(dir.join("big")).unwrap(), big);
    assert_eq!(
        std::fs::read_link(dir.join("link")).unwrap(),
        Path::new(&format!("/{MARK}/target"))
    );
    assert_eq!(support::xattr(&dir, "user.note"), MARK);
    drop(mount);

    // A wrong passphrase: one sentence, nothing mounted.
    let wrong = other.path().join("wrong");
    std::fs::write(&wrong, "not the passphrase").unwrap();
    let mp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pxfs"))
        .arg("mount")
        .arg(mp.path())
        .arg("--config")
        .arg(devnet.config_with_cache(&other.path().join("third")))
        .env("PXFS_PRIVATE_KEY", "")
        .env("PXFS_PASSPHRASE_FILE", &wrong)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a wrong passphrase mounted: {stderr}"
    );
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(!support::is_mounted(mp.path()));
}
