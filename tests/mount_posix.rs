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
