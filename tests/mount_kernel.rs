//! The FUSE adapter under the real kernel (needs /dev/fuse and root): ordinary tools
//! (`cp -a`, `rsync`, `tar`, `diff`) against a mount of the core on an in-memory node.
//! The same tests against a devnet node and chain live with `pxfs devnet`.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

#[path = "support/unmount.rs"]
mod unmount;

use pxfs::fs::store::MemoryStore;
use pxfs::fs::{Fs, FsConfig, TokenInfo};
use pxfs::fuse::FuseFs;

struct Mounted {
    fs: Fs,
    session: Option<fuser::BackgroundSession>,
    rt: tokio::runtime::Runtime,
    store: Arc<MemoryStore>,
    cache: PathBuf,
    dir: PathBuf,
}

fn info(quota: u64) -> TokenInfo {
    TokenInfo {
        token_id: 1,
        quota,
        overdue: false,
        last_sync: 0,
        sync_deadline: 0,
        btns: Some("k51-test".into()),
        synced_usage: 0,
    }
}

/// These tests mount for real; without root and /dev/fuse they fail rather than skip.
fn require_mount() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        Path::new("/dev/fuse").exists() && root,
        "the kernel mount tests need root and /dev/fuse"
    );
}

fn mount(store: Arc<MemoryStore>, cache: &Path, dir: &Path, quota: u64) -> Mounted {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut cfg = FsConfig::new(cache.to_path_buf());
    cfg.single_token = true;
    // A remount in the same process can race the previous mount's last tasks, which hold
    // the token's journal lock until they finish; a new process (the real remount) never
    // sees this. Wait for the lock, boundedly.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let fs = loop {
        let attempt = rt.block_on(async {
            let fs = Fs::new(cfg.clone(), store.clone())?;
            fs.add_token(info(quota)).await?;
            Ok::<_, pxfs::fs::error::FsError>(fs)
        });
        match attempt {
            Ok(fs) => break fs,
            Err(e) if e.to_string().contains("in use") && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(e) => panic!("mount: {e}"),
        }
    };
    let mut fcfg = fuser::Config::default();
    fcfg.mount_options = vec![
        fuser::MountOption::FSName("pxfs".into()),
        fuser::MountOption::DefaultPermissions,
    ];
    fcfg.n_threads = Some(2);
    let session = fuser::Session::new(FuseFs::new(fs.clone(), rt.handle().clone()), dir, &fcfg)
        .unwrap()
        .spawn()
        .unwrap();
    Mounted {
        fs,
        session: Some(session),
        rt,
        store,
        cache: cache.to_path_buf(),
        dir: dir.to_path_buf(),
    }
}

impl Mounted {
    fn unmount(mut self) -> (Arc<MemoryStore>, PathBuf, PathBuf) {
        if let Some(s) = self.session.take() {
            unmount::umount_when_free(&self.dir);
            s.join().unwrap();
        }
        self.rt.block_on(self.fs.flush_all()).unwrap();
        self.fs.abort();
        (self.store.clone(), self.cache.clone(), self.dir.clone())
    }

    fn remount(self, quota: u64) -> Mounted {
        let (store, cache, dir) = self.unmount();
        mount(store, &cache, &dir, quota)
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tree like a user's: nested dirs, many small files, one big file, symlinks, modes, times.
fn generate_tree(root: &Path, small_files: usize, big_bytes: usize) {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..small_files {
        let dir = root.join(format!("d{}/e{}", i % 7, i % 3));
        std::fs::create_dir_all(&dir).unwrap();
        let mut data = vec![0u8; (rng.next_u32() % 3000) as usize];
        rng.fill_bytes(&mut data);
        let p = dir.join(format!("f{i}.bin"));
        std::fs::write(&p, &data).unwrap();
        if i % 10 == 0 {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
    }
    let mut big = vec![0u8; big_bytes];
    rng.fill_bytes(&mut big);
    std::fs::write(root.join("big.bin"), &big).unwrap();
    std::os::unix::fs::symlink("big.bin", root.join("link-to-big")).unwrap();
    std::os::unix::fs::symlink("d0/e0", root.join("link-to-dir")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::set_permissions(root.join("empty"), std::fs::Permissions::from_mode(0o700)).unwrap();
    sh(Command::new("touch")
        .args(["-h", "-d", "2001-02-03 04:05:06.789"])
        .arg(root.join("link-to-big")));
    sh(Command::new("touch")
        .args(["-d", "2001-02-03 04:05:06.789"])
        .arg(root.join("big.bin")));
}

/// Every path with its type, mode, size, mtime (to `ns_digits` fractional digits) and
/// (symlinks) target.
fn listing(root: &Path, ns_digits: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let target = std::fs::read_link(&p)
                .map(|t| t.display().to_string())
                .unwrap_or_default();
            let size = if m.is_dir() { 0 } else { m.len() };
            let ns = format!("{:09}", m.mtime_nsec());
            out.push(format!(
                "{rel} mode={:o} size={size} mtime={}.{} -> {target}",
                m.mode(),
                m.mtime(),
                &ns[..ns_digits]
            ));
            if m.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The two trees list the same; on failure, show the first difference only.
fn assert_same_listing(a: &Path, b: &Path, ns_digits: usize) {
    let (la, lb) = (listing(a, ns_digits), listing(b, ns_digits));
    let first = la.iter().zip(&lb).find(|(x, y)| x != y);
    assert!(
        la.len() == lb.len() && first.is_none(),
        "trees differ ({} vs {} entries), first difference: {first:?}",
        la.len(),
        lb.len()
    );
}

struct Dirs {
    _tmp: tempfile::TempDir,
    src: PathBuf,
    mnt: PathBuf,
    cache: PathBuf,
    out: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| {
        let p = tmp.path().join(n);
        std::fs::create_dir(&p).unwrap();
        p
    };
    Dirs {
        src: d("src"),
        mnt: d("mnt"),
        cache: d("cache"),
        out: d("out"),
        _tmp: tmp,
    }
}

#[test]
fn cp_a_then_remount_gives_back_an_identical_tree() {
    require_mount();
    let d = dirs();
    generate_tree(&d.src, 1000, 20 << 20);
    let m = mount(Arc::new(MemoryStore::new()), &d.cache, &d.mnt, u64::MAX);
    sh(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", d.src.display()))
        .arg(&d.mnt));
    let m = m.remount(u64::MAX);
    sh(Command::new("diff").arg("-r").arg(&d.src).arg(&d.mnt));
    assert_same_listing(&d.src, &d.mnt, 9);
    drop(m);
}

/// POSIX keeps an unlinked file's data until its last descriptor closes (issue #33): through
/// the kernel, a reader opened after the write reads what was written after the unlink and
/// after the writer's close, in both orders, with a sync (a commit) in between; then the
/// name is gone after a remount.
#[test]
fn an_unlinked_file_keeps_its_data_for_its_reader_until_the_last_close() {
    use std::io::{Read, Seek, Write};
    require_mount();
    let d = dirs();
    let mut m = mount(Arc::new(MemoryStore::new()), &d.cache, &d.mnt, u64::MAX);
    for (i, unlink_first) in [(0, true), (1, false)] {
        let path = d.mnt.join(format!("f{i}"));
        std::fs::write(&path, b"the old committed content").unwrap();
        sh(Command::new("sync").arg(&d.mnt));
        let data = format!("written by writer {i}, longer than the old content").into_bytes();
        let mut writer = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        writer.write_all(&data).unwrap();
        let mut reader = std::fs::File::open(&path).unwrap();
        let mut read_all = |when: &str| {
            let mut got = Vec::new();
            // From the filesystem, not from the kernel's page cache.
            use std::os::fd::AsRawFd;
            // SAFETY: an advisory call on a descriptor this test owns.
            unsafe { libc::posix_fadvise(reader.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            reader.rewind().unwrap();
            reader.read_to_end(&mut got).unwrap();
            assert!(
                got == data,
                "order {i}, after {when}: {:?}",
                String::from_utf8_lossy(&got)
            );
        };
        read_all("opening");
        if unlink_first {
            std::fs::remove_file(&path).unwrap();
            read_all("the unlink");
            drop(writer);
            read_all("the writer's close");
        } else {
            drop(writer);
            read_all("the writer's close");
            std::fs::remove_file(&path).unwrap();
            read_all("the unlink");
        }
        sh(Command::new("sync").arg(&d.mnt));
        read_all("a commit");
        drop(reader);
        m = m.remount(u64::MAX);
        assert!(!path.exists(), "order {i}: the unlinked name came back");
    }
    drop(m);
}

#[test]
fn rsync_twice_transfers_nothing_the_second_time_and_inplace_works() {
    require_mount();
    let d = dirs();
    generate_tree(&d.src, 200, 3 << 20);
    let m = mount(Arc::new(MemoryStore::new()), &d.cache, &d.mnt, u64::MAX);
    let src = format!("{}/", d.src.display());
    // Into the sNFT directory itself: rsync also sets its mode and times ("./"), which the
    // root manifest keeps across the remount.
    std::fs::set_permissions(&d.src, std::fs::Permissions::from_mode(0o750)).unwrap();
    let mnt = format!("{}/", d.mnt.display());
    sh(Command::new("rsync").args(["-a", &src, &mnt]));
    let m = m.remount(u64::MAX);
    let second = sh(Command::new("rsync").args(["-a", "--itemize-changes", &src, &mnt]));
    assert_eq!(second.trim(), "", "second rsync changed something");
    // Change the big file in the middle and update it in place.
    let big = d.src.join("big.bin");
    let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"changed in place", 1 << 20).unwrap();
    sh(Command::new("rsync").args(["-a", "--inplace", "--no-whole-file", &src, &mnt]));
    let m = m.remount(u64::MAX);
    sh(Command::new("diff").arg("-r").arg(&d.src).arg(&d.mnt));
    let (a, b) = (
        std::fs::metadata(&d.src).unwrap(),
        std::fs::metadata(&d.mnt).unwrap(),
    );
    // rsync leaves a directory whose mtime matches to the second alone (on ext4 too).
    assert_eq!(
        (b.mode(), b.mtime()),
        (a.mode(), a.mtime()),
        "the sNFT directory's own mode and mtime"
    );
    drop(m);
}

#[test]
fn a_fifo_in_the_mount_connects_a_writer_and_a_reader_and_survives_remount() {
    require_mount();
    let d = dirs();
    let m = mount(Arc::new(MemoryStore::new()), &d.cache, &d.mnt, 0);
    let fifo = d.mnt.join("pipe");
    sh(Command::new("mkfifo").arg("-m").arg("600").arg(&fifo));
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(&fifo, b"through the pipe\n"))
    };
    let read = std::fs::read(&fifo).unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(read, b"through the pipe\n");
    let m = m.remount(0);
    let meta = std::fs::symlink_metadata(&fifo).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type()));
    assert_eq!((meta.mode() & 0o7777, meta.len()), (0o600, 0));
    drop(m);
}

#[test]
fn tar_in_and_out_round_trips() {
    require_mount();
    let d = dirs();
    generate_tree(&d.src, 300, 1 << 20);
    let archive = d.cache.parent().unwrap().join("a.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&d.src)
        .arg("-cf")
        .arg(&archive)
        .arg("."));
    let m = mount(Arc::new(MemoryStore::new()), &d.cache, &d.mnt, u64::MAX);
    sh(Command::new("tar")
        .arg("-C")
        .arg(&d.mnt)
        .arg("-xpf")
        .arg(&archive));
    let m = m.remount(u64::MAX);
    let archive2 = d.cache.parent().unwrap().join("b.tar");
    sh(Command::new("tar")
        .arg("-C")
        .arg(&d.mnt)
        .arg("-cf")
        .arg(&archive2)
        .arg("."));
    sh(Command::new("tar")
        .arg("-C")
        .arg(&d.out)
        .arg("-xpf")
        .arg(&archive2));
    sh(Command::new("diff").arg("-r").arg(&d.src).arg(&d.out));
    // tar keeps whole seconds.
    assert_same_listing(&d.src, &d.out, 0);
    drop(m);
}

#[test]
fn random_writes_match_a_local_file_before_and_after_remount() {
    require_mount();
    use rand::{Rng, SeedableRng};
    use std::os::unix::fs::FileExt;
    let d = dirs();
    let m = mount(Arc::new(MemoryStore::new()), &d.cache, &d.mnt, u64::MAX);
    let local = d.src.join("r");
    let remote = d.mnt.join("r");
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for round in 0..3 {
        let a = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&local)
            .unwrap();
        let b = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&remote)
            .unwrap();
        for _ in 0..200 {
            let off = rng.random_range(0..4 << 20);
            let len = rng.random_range(1..70_000);
            let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            a.write_all_at(&data, off).unwrap();
            b.write_all_at(&data, off).unwrap();
            if rng.random_range(0..20) == 0 {
                let size = rng.random_range(0..5 << 20);
                a.set_len(size).unwrap();
                b.set_len(size).unwrap();
            }
        }
        drop((a, b));
        assert_eq!(
            std::fs::read(&local).unwrap(),
            std::fs::read(&remote).unwrap(),
            "round {round}"
        );
    }
    let m = m.remount(u64::MAX);
    assert_eq!(
        std::fs::read(&local).unwrap(),
        std::fs::read(&remote).unwrap()
    );
    drop(m);
}

fn statvfs(p: &Path) -> libc::statvfs {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a zeroed statvfs is a valid out-parameter; c is a valid C string.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
        s
    }
}

fn xattr(p: &Path, name: &str) -> String {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(len >= 0, "getxattr {name}");
    String::from_utf8(buf[..len as usize].to_vec()).unwrap()
}

#[test]
fn filling_the_quota_exactly_works_and_one_byte_more_fails_with_edquot() {
    require_mount();
    use std::io::Write;
    let d = dirs();
    let quota = 1 << 20;
    let store = Arc::new(MemoryStore::new());
    let m = mount(store.clone(), &d.cache, &d.mnt, quota);
    // The manifests count too (docs/FORMAT.md §7): with the empty file committed (fsync)
    // they stay as they are while it is written, so its content may take exactly the rest.
    let mut f = std::fs::File::create(d.mnt.join("fill")).unwrap();
    f.sync_all().unwrap();
    let manifests: u64 = xattr(&d.mnt, "user.pxfs.usage").parse().unwrap();
    let root_bytes = |store: &MemoryStore| {
        let root = xattr(&d.mnt, "user.pxfs.root");
        let (content, metadata) = store.measure(&root).expect("the committed root");
        assert_eq!(content, 0);
        metadata
    };
    assert_eq!(manifests, root_bytes(&store));
    let content = quota - manifests;
    // Bytes that do not repeat: identical plaintext chunks would be stored once.
    let fill: Vec<u8> = (0..content)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    f.write_all(&fill).unwrap();
    assert_eq!(xattr(&d.mnt, "user.pxfs.usage"), quota.to_string());
    let err = f.write_all(b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT));
    drop(f);
    assert_eq!(
        std::fs::metadata(d.mnt.join("fill")).unwrap().len(),
        content
    );
    let st = statvfs(&d.mnt);
    assert_eq!(st.f_blocks * st.f_frsize, quota);
    assert_eq!(st.f_bfree, 0);
    std::fs::remove_file(d.mnt.join("fill")).unwrap();
    std::fs::File::open(&d.mnt).unwrap().sync_all().unwrap();
    let usage: u64 = xattr(&d.mnt, "user.pxfs.usage").parse().unwrap();
    assert_eq!(
        usage,
        root_bytes(&store),
        "only the (empty) root manifest is left"
    );
    assert_eq!(
        statvfs(&d.mnt).f_bfree * 4096,
        (quota - usage) / 4096 * 4096
    );
    drop(m);
}

/// Issue #39 through the kernel: a chunked file changed in place on a fresh cache each time
/// (an overlay over the committed chunks: partial rewrites, appends, truncates and holes)
/// reads back as a local file does; a sparse file tells its holes (`SEEK_DATA`/`SEEK_HOLE`)
/// and copies out sparse.
#[test]
fn in_place_changes_on_a_fresh_cache_match_a_local_file_and_sparse_files_copy_out_sparse() {
    require_mount();
    use rand::{Rng, SeedableRng};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 131_072;
    let d = dirs();
    let mut m = mount(Arc::new(MemoryStore::new()), &d.cache, &d.mnt, u64::MAX);
    let local = d.src.join("image");
    let remote = d.mnt.join("image");
    let mut rng = rand::rngs::StdRng::seed_from_u64(39);
    let data: Vec<u8> = (0..6 << 20).map(|_| rng.random()).collect();
    std::fs::write(&local, &data).unwrap();
    std::fs::write(&remote, &data).unwrap();
    let sparse = d.mnt.join("sparse");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(256 << 20).unwrap();
    f.write_all_at(b"!", 128 << 20).unwrap();
    f.sync_all().unwrap();
    drop(f);
    for round in 0..4 {
        // A fresh cache: the committed version is on the node only.
        let (store, _, dir) = m.unmount();
        let cache = d.out.join(format!("cache{round}"));
        std::fs::create_dir(&cache).unwrap();
        m = mount(store, &cache, &dir, u64::MAX);
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(p)
                .unwrap()
        };
        let (a, b) = (open(&local), open(&remote));
        for _ in 0..20 {
            let off = rng.random_range(0..7 << 20);
            let len = rng.random_range(1..10_000);
            let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            a.write_all_at(&bytes, off).unwrap();
            b.write_all_at(&bytes, off).unwrap();
            if rng.random_range(0..8) == 0 {
                let size = rng.random_range(0..8 << 20);
                a.set_len(size).unwrap();
                b.set_len(size).unwrap();
            }
        }
        b.sync_all().unwrap();
        drop((a, b));
        assert!(
            std::fs::read(&local).unwrap() == std::fs::read(&remote).unwrap(),
            "round {round}"
        );
    }
    let m = m.remount(u64::MAX);
    assert!(std::fs::read(&local).unwrap() == std::fs::read(&remote).unwrap());

    // Holes: the data is the chunk holding the byte.
    let f = std::fs::File::open(&sparse).unwrap();
    let seek = |at: u64, whence| unsafe { libc::lseek(f.as_raw_fd(), at as libc::off_t, whence) };
    assert_eq!(seek(0, libc::SEEK_DATA), 128 << 20);
    assert_eq!(seek(0, libc::SEEK_HOLE), 0);
    assert_eq!(seek(128 << 20, libc::SEEK_HOLE), (128 << 20) + CHUNK as i64);
    assert_eq!(
        seek((128 << 20) + CHUNK, libc::SEEK_DATA),
        -1,
        "only holes follow"
    );
    drop(f);
    for mode in ["--sparse=auto", "--sparse=always"] {
        let out = d.out.join(format!("sparse{mode}"));
        sh(Command::new("cp").arg(mode).arg(&sparse).arg(&out));
        let meta = std::fs::metadata(&out).unwrap();
        assert_eq!(meta.len(), 256 << 20);
        assert!(
            meta.blocks() * 512 <= 1 << 20,
            "{mode}: {} blocks",
            meta.blocks()
        );
        let mut byte = [0u8; 3];
        std::fs::File::open(&out)
            .unwrap()
            .read_exact_at(&mut byte, (128 << 20) - 1)
            .unwrap();
        assert_eq!(byte, [0, b'!', 0], "{mode}");
    }
    drop(m);
}

/// A write-only handle writes around the kernel's page cache where the kernel allows it
/// (`FOPEN_DIRECT_IO`): what it writes must still reach a reader that cached the old pages
/// (no drop of its cache in between), a shared mapping of the file, a new reader, and a
/// remount. Unaligned and aligned writes, an overwrite and an append.
#[test]
fn a_write_only_handle_s_writes_reach_cached_pages_and_mappings() {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    require_mount();
    let d = dirs();
    let m = mount(Arc::new(MemoryStore::new()), &d.cache, &d.mnt, u64::MAX);
    let path = d.mnt.join("f");
    let mut expect: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &expect).unwrap();
    let mut reader = std::fs::File::open(&path).unwrap();
    let mut got = Vec::new();
    reader.read_to_end(&mut got).unwrap();
    assert!(got == expect, "the first read");
    let len = 2usize << 20;
    // SAFETY: a read-only shared mapping of a file this test owns, unmapped below; the
    // file is at most `len` bytes long while it is read through the mapping.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            reader.as_raw_fd(),
            0,
        )
    };
    assert_ne!(
        map,
        libc::MAP_FAILED,
        "mmap: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: `n` is at most the file's size when called, which stays under `len`.
    let mapped = |n: usize| unsafe { std::slice::from_raw_parts(map as *const u8, n).to_vec() };
    assert!(
        mapped(expect.len()) == expect,
        "the mapping before the writes"
    );
    let writes: [(u64, usize, u8); 4] = [
        (4096 + 100, 9000, 0xa1),  // unaligned, across pages
        (65536, 131072, 0xb2),     // aligned, 128 KiB across two chunks
        (1_000_000, 48_576, 0xc3), // up to the end exactly
        (1 << 20, 300_000, 0xd4),  // an append
    ];
    for (n, &(at, count, byte)) in writes.iter().enumerate() {
        let writer = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        writer.write_all_at(&vec![byte; count], at).unwrap();
        drop(writer);
        let end = at as usize + count;
        if end > expect.len() {
            expect.resize(end, 0);
        }
        expect[at as usize..end].fill(byte);
        got.clear();
        reader.rewind().unwrap();
        reader.read_to_end(&mut got).unwrap();
        assert!(
            got == expect,
            "write {n}: the reader that cached the pages read stale bytes"
        );
        assert!(
            mapped(expect.len()) == expect,
            "write {n}: the mapping shows stale bytes"
        );
        let mut fresh = Vec::new();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_end(&mut fresh)
            .unwrap();
        assert!(fresh == expect, "write {n}: a new reader read stale bytes");
    }
    // SAFETY: the mapping made above, not used after this.
    assert_eq!(unsafe { libc::munmap(map, len) }, 0);
    drop(reader);
    let mut append = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    append.write_all(b"tail").unwrap();
    drop(append);
    expect.extend_from_slice(b"tail");
    let m = m.remount(u64::MAX);
    assert!(std::fs::read(&path).unwrap() == expect, "after a remount");
    drop(m);
}
