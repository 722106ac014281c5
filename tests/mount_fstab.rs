//! Running pxfs like a real drive: mount(8) with fstab type `fuse.pxfs` (through
//! mount.fuse3) and type `pxfs` (through /sbin/mount.pxfs), systemd readiness of the
//! foreground daemon, and `pxfs unmount` of a busy mount. Needs root, /dev/fuse, anvil.

mod support;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{PXFS, TestDevnet, TestMount, is_mounted, wait_until};

const HELPER: &str = "/sbin/mount.pxfs";
const FUSE_PROGRAM: &str = "/usr/local/sbin/pxfs";

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mount8(args: &[&str], source: &Path, mountpoint: &Path) -> Output {
    Command::new("mount")
        .args(args)
        .arg(source)
        .arg(mountpoint)
        .output()
        .unwrap()
}

/// The token directory works: a file written there reads back and is listed.
fn assert_usable(root: &Path) {
    std::fs::write(root.join("hello.txt"), b"from fstab").unwrap();
    assert_eq!(
        std::fs::read(root.join("hello.txt")).unwrap(),
        b"from fstab"
    );
    let names: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.iter().any(|n| n == "hello.txt"), "{names:?}");
}

/// Lazily unmounts on drop if a step failed half-way.
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
        }
    }
}

/// A symlink to the pxfs under test at `path`, created if absent and removed on drop.
/// mount(8) runs helpers with a fixed PATH (`/usr/local/sbin` first), so this is how the
/// real mount(8) reaches this build: `/sbin/mount.pxfs` for type `pxfs`,
/// `/usr/local/sbin/pxfs` for mount.fuse3 and type `fuse.pxfs`.
struct TempLink(Option<&'static str>);
impl TempLink {
    fn ensure(path: &'static str) -> TempLink {
        if Path::new(path).symlink_metadata().is_ok() {
            return TempLink(None);
        }
        std::os::unix::fs::symlink(PXFS, path).unwrap();
        TempLink(Some(path))
    }
}
impl Drop for TempLink {
    fn drop(&mut self) {
        if let Some(path) = self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[test]
fn mount_8_with_type_fuse_pxfs_mounts_the_token() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token();
    let _program = TempLink::ensure(FUSE_PROGRAM);
    let mp = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(mp.path().to_path_buf());

    let out = mount8(
        &[
            "-t",
            "fuse.pxfs",
            "-o",
            &format!("token={token},_netdev,nofail"),
        ],
        &devnet.config(),
        mp.path(),
    );
    assert!(
        out.status.success(),
        "mount -t fuse.pxfs: {}",
        output_text(&out)
    );
    assert!(
        is_mounted(mp.path()),
        "mount returned before the mount was usable"
    );
    // With one token the token directory is the mount root.
    assert_usable(mp.path());

    let out = Command::new("umount").arg(mp.path()).output().unwrap();
    assert!(out.status.success(), "umount: {}", output_text(&out));
    assert!(!is_mounted(mp.path()));
}

#[test]
fn mount_8_with_type_pxfs_runs_the_mount_pxfs_helper() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token();
    let _helper = TempLink::ensure(HELPER);
    let mp = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(mp.path().to_path_buf());

    // An option pxfs does not know is refused by name, and nothing is mounted.
    let out = mount8(
        &["-t", "pxfs", "-o", &format!("token={token},cache_size=9")],
        &devnet.config(),
        mp.path(),
    );
    assert!(!out.status.success(), "mount accepted an unknown option");
    assert!(
        output_text(&out).contains("cache_size=9"),
        "{}",
        output_text(&out)
    );
    assert!(!is_mounted(mp.path()));

    let out = mount8(
        &["-t", "pxfs", "-o", &format!("_netdev,nofail,token={token}")],
        &devnet.config(),
        mp.path(),
    );
    assert!(out.status.success(), "mount -t pxfs: {}", output_text(&out));
    assert!(
        is_mounted(mp.path()),
        "mount returned before the mount was usable"
    );
    assert_usable(mp.path());

    let out = Command::new(PXFS)
        .arg("unmount")
        .arg(mp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "pxfs unmount: {}", output_text(&out));
    assert!(!is_mounted(mp.path()));
}

#[test]
fn foreground_mount_tells_systemd_it_is_ready_then_stopping() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token().to_string();
    let mp = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(mp.path().to_path_buf());
    let sock_dir = tempfile::tempdir().unwrap();
    let sock_path = sock_dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();

    let mut daemon = Command::new(PXFS)
        .arg("mount")
        .arg(mp.path())
        .args(["--foreground", "--token", &token, "--config"])
        .arg(devnet.config())
        .env("NOTIFY_SOCKET", &sock_path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("no READY=1 within 120 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means usable: the mount is there the moment systemd hears it.
    assert!(is_mounted(mp.path()));
    assert_usable(mp.path());

    // SAFETY: signalling our own child.
    unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) };
    // A SIGTERM arriving before the daemon watches for it would kill it outright (the
    // default action) with nothing drained: say which of the two happened.
    let n = match sock.recv(&mut buf) {
        Ok(n) => n,
        Err(e) => panic!(
            "no STOPPING=1 after SIGTERM ({e}); the daemon: {:?}",
            daemon.try_wait()
        ),
    };
    assert_eq!(&buf[..n], b"STOPPING=1");
    let status = daemon.wait().unwrap();
    assert!(status.success(), "daemon exited with {status}");
    assert!(!is_mounted(mp.path()));
}

#[test]
fn unmount_of_a_busy_mount_names_the_process_and_leaves_it_mounted() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token().to_string();
    let mut mount = TestMount::mount(&devnet.config(), &["--token", &token]);
    let file = mount.path().join("held.txt");
    std::fs::write(&file, b"busy").unwrap();

    // A process that keeps the file open (fd 3) until killed.
    let mut holder = Command::new("bash")
        .arg("-c")
        .arg(r#"exec 3<"$1"; echo open; exec sleep 600"#)
        .arg("bash")
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "open");

    let out = Command::new(PXFS)
        .arg("unmount")
        .arg(mount.path())
        .output()
        .unwrap();
    let text = output_text(&out);
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!out.status.success(), "unmount of a busy mount succeeded");
    assert!(text.contains("busy"), "{text}");
    assert!(
        text.contains(&format!("pid {}", holder.id())),
        "message does not name the holder (pid {}): {text}",
        holder.id()
    );
    assert!(is_mounted(mount.path()));
    assert_eq!(std::fs::read(&file).unwrap(), b"busy");

    // Once the holder is gone, the unmount goes through.
    wait_until("the holder to exit", Duration::from_secs(10), || {
        !support::pid_alive(holder.id())
    });
    mount.unmount();
}
