//! Eight threads writing and reading at once through a real kernel mount, on their own
//! files and on shared ones: disjoint pwrite stripes of one file, one appender with
//! readers following it, atomic replace-by-rename in a shared directory with readers,
//! create/unlink churn with concurrent readdir, mkdir/rmdir, links, truncates, fsyncs.
//! Every change is mirrored onto a local-disk reference by the same thread; no operation
//! may fail, every read must match, and the mount must end identical to the reference,
//! also after a remount from an empty cache.

mod support;

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use support::{TestDevnet, TestMount, assert_same_tree, set_mtime};

const WORKERS: usize = 8;
/// How long the workers run; each also stops after `MAX_OPS` operations.
const RUN_FOR: Duration = Duration::from_secs(40);
const MAX_OPS: usize = 20_000;
/// Each worker's region of `shared/stripes.bin`.
const STRIPE: u64 = 256 * 1024;

/// The appended log's byte at `pos`: readers can check any range they read.
fn log_byte(pos: u64) -> u8 {
    (pos.wrapping_mul(2_654_435_761) >> 11) as u8 ^ (pos / 4093) as u8
}

fn log_bytes(from: u64, len: usize) -> Vec<u8> {
    (from..from + len as u64).map(log_byte).collect()
}

/// Version `v` of worker `w`'s replaced-by-rename file: a header naming it, then a body
/// derived from it, so a reader can tell a complete version from a torn one.
fn version_content(w: usize, v: u64) -> Vec<u8> {
    let len = 100 + ((v * 7919 + w as u64 * 104_729) % 40_000) as usize;
    let mut out = format!("w{w} v{v}\n").into_bytes();
    let mut rng = StdRng::seed_from_u64(((w as u64) << 32) | v);
    let mut body = vec![0u8; len];
    rng.fill_bytes(&mut body);
    out.extend_from_slice(&body);
    out
}

fn check_version(content: &[u8], what: &str) {
    let end = content
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or_else(|| panic!("{what}: no header in {} bytes", content.len()));
    let header = std::str::from_utf8(&content[..end]).unwrap();
    let (w, v) = header
        .strip_prefix('w')
        .and_then(|h| h.split_once(" v"))
        .unwrap_or_else(|| panic!("{what}: bad header {header:?}"));
    let expected = version_content(w.parse().unwrap(), v.parse().unwrap());
    assert!(
        content == expected.as_slice(),
        "{what}: torn version {header} ({} bytes, expected {})",
        content.len(),
        expected.len()
    );
}

/// The same relative operation on the mount and on the reference.
struct Mirror {
    mount: PathBuf,
    reference: PathBuf,
    worker: usize,
    op: usize,
}

impl Mirror {
    /// Run `f` on both roots; both must succeed with the same result.
    fn both<T: PartialEq + std::fmt::Debug>(
        &self,
        what: &str,
        f: impl Fn(&Path) -> std::io::Result<T>,
    ) -> T {
        let r = f(&self.reference).unwrap_or_else(|e| {
            panic!(
                "reference: worker {} op {}: {what}: {e}",
                self.worker, self.op
            )
        });
        let m = f(&self.mount).unwrap_or_else(|e| {
            panic!("mount: worker {} op {}: {what}: {e}", self.worker, self.op)
        });
        assert_eq!(
            m, r,
            "worker {} op {}: {what}: the mount answered differently from local disk",
            self.worker, self.op
        );
        m
    }

    fn on_mount<T>(&self, what: &str, r: std::io::Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("mount: worker {} op {}: {what}: {e}", self.worker, self.op))
    }
}

fn rw(p: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).open(p)
}

fn read_at(f: &File, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f.read_at(&mut buf[done..], off + done as u64)?;
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    Ok(buf)
}

/// The appended log, opened `O_APPEND` on the reference and on the mount.
fn open_log(m: &Mirror) -> Vec<File> {
    [&m.reference, &m.mount]
        .iter()
        .map(|r| {
            m.on_mount(
                "open log for appending",
                OpenOptions::new()
                    .append(true)
                    .open(r.join("shared/append.log")),
            )
        })
        .collect()
}

fn worker(w: usize, mount: PathBuf, reference: PathBuf, deadline: Instant) -> usize {
    let mut rng = StdRng::seed_from_u64(0xc0c0 + w as u64);
    let mut m = Mirror {
        mount,
        reference,
        worker: w,
        op: 0,
    };
    let own = format!("own/w{w}");
    m.both("mkdir own", |r| std::fs::create_dir(r.join(&own)));
    let stripes: Vec<File> = [&m.reference, &m.mount]
        .iter()
        .map(|r| m.on_mount("open stripes", rw(&r.join("shared/stripes.bin"))))
        .collect();
    let mut files: Vec<String> = Vec::new();
    let mut next_file = 0;
    let mut version = 0u64;
    let mut churn: Vec<String> = Vec::new();
    let mut next_churn = 0;
    let mut appended = 0u64;
    let mut log = if w == 0 { open_log(&m) } else { Vec::new() };
    let mut subdirs = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while m.op < MAX_OPS && Instant::now() < deadline {
        m.op += 1;
        let pick = rng.random_range(0..100);
        let pick = if w == 0 && pick < 40 { 200 } else { pick };
        match pick {
            // A new file of my own, or a write into one (kept open across a few writes).
            0..=14 => {
                if files.is_empty() || rng.random_bool(0.2) {
                    let name = format!("{own}/f{next_file}");
                    next_file += 1;
                    let len = rng.random_range(0..buf.len());
                    rng.fill_bytes(&mut buf[..len]);
                    let data = &buf[..len];
                    m.both("create O_EXCL", |r| {
                        let mut f = OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .mode(0o640)
                            .open(r.join(&name))?;
                        f.write_all(data)
                    });
                    files.push(name);
                } else {
                    let name = &files[rng.random_range(0..files.len())];
                    let writes: Vec<(u64, Vec<u8>)> = (0..rng.random_range(1..4))
                        .map(|_| {
                            let len = rng.random_range(1..8192);
                            let mut d = vec![0u8; len];
                            rng.fill_bytes(&mut d);
                            (rng.random_range(0..200_000), d)
                        })
                        .collect();
                    m.both("pwrite own file", |r| {
                        let f = rw(&r.join(name))?;
                        for (off, d) in &writes {
                            f.write_all_at(d, *off)?;
                        }
                        Ok(())
                    });
                }
            }
            15..=19 if !files.is_empty() => {
                let name = &files[rng.random_range(0..files.len())];
                let size = rng.random_range(0..150_000);
                m.both("truncate own file", |r| rw(&r.join(name))?.set_len(size));
            }
            20..=29 if !files.is_empty() => {
                let name = &files[rng.random_range(0..files.len())];
                let off = rng.random_range(0..200_000);
                m.both("read own file", |r| {
                    let f = File::open(r.join(name))?;
                    let len = f.metadata()?.len();
                    Ok((len, read_at(&f, off, 20_000)?))
                });
            }
            // My stripe of the shared file, through handles open the whole time.
            30..=44 => {
                let len = rng.random_range(1..16_384);
                let off = w as u64 * STRIPE + rng.random_range(0..STRIPE - len as u64);
                rng.fill_bytes(&mut buf[..len]);
                for f in &stripes {
                    m.on_mount("pwrite stripe", f.write_all_at(&buf[..len], off));
                }
                if rng.random_bool(0.2) {
                    let back: Vec<Vec<u8>> = stripes
                        .iter()
                        .map(|f| {
                            m.on_mount(
                                "read stripe",
                                read_at(f, w as u64 * STRIPE, STRIPE as usize),
                            )
                        })
                        .collect();
                    assert!(
                        back[0] == back[1],
                        "worker {w} op {}: my stripe differs",
                        m.op
                    );
                }
            }
            // Replace my file in the shared directory atomically (write a temporary, rename).
            45..=54 => {
                version += 1;
                let data = version_content(w, version);
                let (tmp, cur) = (format!("shared/ren/.w{w}.tmp"), format!("shared/ren/w{w}"));
                let fsync = rng.random_bool(0.05);
                m.both("write temporary and rename over", |r| {
                    let mut f = OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(r.join(&tmp))?;
                    f.write_all(&data)?;
                    if fsync {
                        f.sync_all()?;
                    }
                    drop(f);
                    std::fs::rename(r.join(&tmp), r.join(&cur))
                });
            }
            // Someone else's replaced file: always a complete version.
            55..=64 => {
                let other = rng.random_range(0..WORKERS);
                let p = m.mount.join(format!("shared/ren/w{other}"));
                // The name always exists: a rename replaces it atomically.
                let content = m.on_mount("read a replaced file", std::fs::read(&p));
                check_version(&content, &format!("worker {w} reads w{other}"));
            }
            // Create/unlink churn in a shared directory, listed by everyone meanwhile.
            65..=74 => {
                if churn.len() > 20 || (!churn.is_empty() && rng.random_bool(0.4)) {
                    let name = churn.swap_remove(rng.random_range(0..churn.len()));
                    m.both("unlink churn", |r| std::fs::remove_file(r.join(&name)));
                } else {
                    let name = format!("shared/churn/w{w}-{next_churn}");
                    next_churn += 1;
                    let data = format!("{name}\n").repeat(rng.random_range(0..50));
                    m.both("create churn", |r| std::fs::write(r.join(&name), &data));
                    churn.push(name);
                }
                if rng.random_bool(0.3) {
                    let names: Vec<String> = m
                        .on_mount(
                            "readdir churn",
                            std::fs::read_dir(m.mount.join("shared/churn")),
                        )
                        .map(|e| {
                            m.on_mount("readdir entry", e)
                                .file_name()
                                .into_string()
                                .unwrap()
                        })
                        .collect();
                    let unique: HashSet<&String> = names.iter().collect();
                    assert_eq!(unique.len(), names.len(), "readdir listed a name twice");
                    for c in &churn {
                        let n = c.rsplit('/').next().unwrap().to_string();
                        assert!(names.contains(&n), "readdir misses my live file {n}");
                    }
                }
            }
            // Follow the appender: any range read is the log's content at that range.
            75..=84 => {
                let f = m.on_mount("open log", File::open(m.mount.join("shared/append.log")));
                let size = m.on_mount("stat log", f.metadata()).len();
                if size > 0 {
                    let off = rng.random_range(0..size);
                    let data = m.on_mount("read log", read_at(&f, off, 32_768));
                    assert!(
                        data == log_bytes(off, data.len()),
                        "worker {w} op {}: log read at {off} ({} bytes) differs",
                        m.op,
                        data.len()
                    );
                }
            }
            // Directories come and go; links and symlinks to my files.
            85..=89 => {
                let d = format!("{own}/sub{subdirs}");
                if rng.random_bool(0.6) {
                    subdirs += 1;
                    let d = format!("{own}/sub{subdirs}");
                    m.both("mkdir", |r| std::fs::create_dir(r.join(&d)));
                } else if subdirs > 0 {
                    m.both("rmdir", |r| std::fs::remove_dir(r.join(&d)));
                    subdirs -= 1;
                }
            }
            90..=93 if !files.is_empty() => {
                let name = files[rng.random_range(0..files.len())].clone();
                let link = format!("{own}/l{next_file}");
                next_file += 1;
                if rng.random_bool(0.5) {
                    m.both("link", |r| std::fs::hard_link(r.join(&name), r.join(&link)));
                    files.push(link);
                } else {
                    let target = name.rsplit('/').next().unwrap().to_string();
                    m.both("symlink", |r| {
                        std::os::unix::fs::symlink(&target, r.join(&link))
                    });
                }
            }
            94..=95 if !files.is_empty() => {
                let name = files.swap_remove(rng.random_range(0..files.len()));
                m.both("unlink own file", |r| std::fs::remove_file(r.join(&name)));
            }
            96..=97 if !files.is_empty() => {
                let name = &files[rng.random_range(0..files.len())];
                m.both("fsync own file", |r| rw(&r.join(name))?.sync_all());
            }
            98..=99 if rng.random_bool(0.3) => {
                for f in &stripes {
                    m.on_mount("fsync stripes", f.sync_data());
                }
            }
            // The one appender, closing and reopening now and then.
            200 => {
                let len = rng.random_range(1..4_000);
                let data = log_bytes(appended, len);
                for mut f in &log {
                    m.on_mount("append", f.write_all(&data));
                }
                appended += len as u64;
                if rng.random_bool(0.1) {
                    log.clear();
                    log = open_log(&m);
                }
            }
            _ => {}
        }
    }
    m.op
}

/// Give every entry below `root` (files first, then directories bottom-up) the same mtime,
/// so two trees written at different instants compare on content and shape.
fn normalise_mtimes(root: &Path) {
    fn walk(dir: &Path) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(&e.path());
            }
            if !ft.is_symlink() {
                set_mtime(&e.path(), 1_700_000_000);
            }
        }
    }
    walk(root);
}

#[test]
fn eight_concurrent_writers_and_readers_end_identical_to_a_local_reference() {
    let devnet = TestDevnet::start(&[]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let local = tempfile::tempdir().unwrap();
    let roots = [
        mount.token(devnet.token()).join("conc"),
        local.path().join("conc"),
    ];
    for r in &roots {
        for d in ["own", "shared/ren", "shared/churn"] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        let f = File::create(r.join("shared/stripes.bin")).unwrap();
        f.set_len(STRIPE * WORKERS as u64).unwrap();
        File::create(r.join("shared/append.log")).unwrap();
        for w in 0..WORKERS {
            std::fs::write(r.join(format!("shared/ren/w{w}")), version_content(w, 0)).unwrap();
        }
    }

    let deadline = Instant::now() + RUN_FOR;
    let threads: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (m, r) = (roots[0].clone(), roots[1].clone());
            std::thread::Builder::new()
                .name(format!("worker-{w}"))
                .spawn(move || worker(w, m, r, deadline))
                .unwrap()
        })
        .collect();
    let mut failures = Vec::new();
    let mut ops = 0;
    for (w, t) in threads.into_iter().enumerate() {
        match t.join() {
            Ok(n) => ops += n,
            Err(e) => failures.push(format!(
                "worker {w}: {}",
                e.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "workers failed:\n{}",
        failures.join("\n")
    );
    eprintln!("{ops} operations by {WORKERS} workers");

    for r in &roots {
        normalise_mtimes(r);
    }
    assert_same_tree(&roots[1], &roots[0]);
    drop(mount);

    let other_cache = tempfile::tempdir().unwrap();
    let config = devnet.config_with_cache(&other_cache.path().join("c"));
    let mount = TestMount::mount(&config, &[]);
    assert_same_tree(&roots[1], &mount.token(devnet.token()).join("conc"));
}
