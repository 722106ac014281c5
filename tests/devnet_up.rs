//! `pxfs devnet up` end to end: a real anvil, a real `pxfs node`, the deployed contracts.

mod support;

use std::time::{Duration, Instant};

use support::{TestDevnet, children_of, pid_alive};

#[test]
fn devnet_up_mints_a_token_with_a_btns_name_whose_usage_document_is_empty() {
    let quota: u64 = 5 * 1024 * 1024;
    let mut devnet = TestDevnet::start(&["--quota", &quota.to_string()]);

    // The status command sees the minted token with its BTNS name and the chain's quota.
    let out = devnet.pxfs(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = status["tokens"].as_array().expect("tokens array");
    assert_eq!(tokens.len(), 1, "{status}");
    let token = &tokens[0];
    assert_eq!(token["token_id"].as_u64(), Some(devnet.token()));
    assert_eq!(token["quota"].as_u64(), Some(quota));
    assert_eq!(token["usage"].as_u64(), Some(0));
    assert_eq!(token["overdue"].as_bool(), Some(false));
    let btns = token["btns_key"].as_str().expect("btns key").to_string();
    assert_eq!(btns, devnet.info["btns_names"][0].as_str().unwrap());

    // Resolving the BTNS name on the node gives the initial usage document.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let (_cid, doc) = rt.block_on(pxfs::btns::resolve(&client, &btns)).unwrap();
    // An empty tree stores its root node and its empty root directory's leaf
    // (docs/FORMAT.md §3, §7), as the oracle measures them; nothing was synced yet, so the
    // chain still says 0 (above).
    // Encrypted by default: the root node lists the sealed leaf publicly (§3.1, §6.3).
    let root = rt.block_on(client.cat(doc.root(), 0, None)).unwrap();
    let (_, lists) = pxfs::format::envelope::public(&root).unwrap();
    assert_eq!((lists.nodes.len(), lists.data.len()), (1, 0));
    let leaf = rt.block_on(client.cat(&lists.nodes[0], 0, None)).unwrap();
    assert!(
        !String::from_utf8_lossy(&leaf).contains("\"body\""),
        "the leaf is sealed"
    );
    let empty = (root.len() + leaf.len()) as u64;
    assert_eq!((doc.usage(), doc.files()), (empty, None));
    let crypto = support::devnet_crypto(&devnet, &doc);
    assert!(crypto.is_sealed());
    assert!(support::node_tree(&rt, &client, doc.root(), &crypto).is_empty());
    let measured = rt
        .block_on(pxfs::oracle::measure_tree(
            &client,
            &btns,
            None,
            &pxfs::oracle::Limits::default(),
        ))
        .unwrap();
    assert_eq!((measured.usage, measured.files), (empty, 0));
    assert_eq!(doc.quota(), quota);
    assert_eq!(doc.token_id(), devnet.token());
    assert_eq!(doc.schema(), "pxfs/usage/2");

    // The node collects unpinned blocks by itself, and a collection keeps the whole tree.
    assert!(
        support::devnet_child(&devnet, "\0node\0").is_some_and(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("\0--enable-gc"))
        }),
        "the devnet's node runs with --enable-gc"
    );
    let gc = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/api/v0/repo/gc", devnet.node_url()))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(gc, 200);
    let root_after = rt.block_on(client.cat(doc.root(), 0, None)).unwrap();
    assert_eq!(root_after, root);
    assert!(support::node_tree(&rt, &client, doc.root(), &crypto).is_empty());

    // SIGTERM stops the devnet and every child it started.
    let children = children_of(devnet.pid());
    assert!(
        children.len() >= 2,
        "anvil and the node run as children: {children:?}"
    );
    let status = devnet.stop();
    assert!(status.success(), "devnet exit status {status}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while children.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<_> = children.into_iter().filter(|&p| pid_alive(p)).collect();
    assert!(left.is_empty(), "children left behind: {left:?}");
}

#[test]
fn devnet_killed_with_sigkill_leaves_no_children_behind() {
    let devnet = TestDevnet::start(&[]);
    let children = children_of(devnet.pid());
    assert!(children.len() >= 2, "{children:?}");
    unsafe { libc::kill(devnet.pid() as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while children.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<_> = children.into_iter().filter(|&p| pid_alive(p)).collect();
    assert!(left.is_empty(), "children left behind: {left:?}");
    drop(devnet); // reaps the killed process and removes its directory
}

/// The node of a running devnet (its child `pxfs node`).
fn node_pid(devnet: &TestDevnet) -> u32 {
    // cmdline is NUL-separated: `pxfs node --repo ...` (anvil's path has node_modules).
    support::devnet_child(devnet, "\0node\0--repo").expect("the devnet's pxfs node")
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(prefix).tempdir().unwrap()
}

/// Lists `mp` the way a user would: a dead FUSE mount answers "Transport endpoint is not
/// connected" (ENOTCONN).
fn assert_not_a_dead_mount(mp: &std::path::Path) {
    assert!(
        !support::is_mounted(mp),
        "{} is still a mount",
        mp.display()
    );
    if let Err(e) = std::fs::read_dir(mp) {
        panic!("{} cannot be listed: {e}", mp.display());
    }
}

fn assert_no_children_left(children: Vec<u32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while children.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<_> = children.into_iter().filter(|&p| pid_alive(p)).collect();
    assert!(left.is_empty(), "children left behind: {left:?}");
}

#[test]
fn ctrl_c_to_the_process_group_drains_unmounts_and_a_resumed_devnet_shows_the_files() {
    let mnt = tempdir("pxfs-devnet-mnt-");
    let mp = mnt.path().to_str().unwrap().to_string();
    let mut devnet = TestDevnet::start_in(tempdir("pxfs-devnet-"), &["--mount", &mp], true);
    let token = devnet.token();
    let contract = devnet.info["contract"].clone();
    let children = children_of(devnet.pid());
    assert!(
        children.len() >= 4,
        "anvil, node, oracle, mount: {children:?}"
    );

    // A copy, not fsynced: the stop must upload and commit it.
    let src = tempdir("pxfs-devnet-src-");
    support::generate_tree(src.path(), 17, 300, 3 << 20);
    let dst = mnt.path().join(token.to_string()).join("tree");
    support::sh(&format!(
        "cp -a {}/. {}",
        src.path().display(),
        dst.display()
    ));

    // Past the largest file size: EFBIG, for truncate(2) and ftruncate(2) alike.
    let big = dst.join("big.bin");
    let beyond = (pxfs::fs::MAX_FILE_SIZE + 1).to_string();
    let out = std::process::Command::new("truncate")
        .args(["-s", &beyond])
        .arg(&big)
        .output()
        .unwrap();
    assert!(!out.status.success(), "truncate -s {beyond} succeeded");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("File too large"),
        "truncate -s {beyond}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    let err = f.set_len(pxfs::fs::MAX_FILE_SIZE + 1).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "ftruncate: {err}");
    let err = std::os::unix::fs::FileExt::write_at(&f, b"x", pxfs::fs::MAX_FILE_SIZE).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "pwrite: {err}");
    drop(f);

    // Ctrl-C as a terminal sends it: SIGINT to the whole foreground process group.
    let started = Instant::now();
    let status = devnet.interrupt_group(Duration::from_secs(120));
    let took = started.elapsed();
    let stderr = devnet.stderr();
    assert!(status.success(), "exit status {status}; stderr:\n{stderr}");
    assert!(took < Duration::from_secs(30), "stopping took {took:?}");
    assert_not_a_dead_mount(mnt.path());
    assert_no_children_left(children);

    // Started again on the same directory: the same chain, contract and sNFT, the files.
    let dir = devnet.into_dir();
    let mut again = TestDevnet::start_in(dir, &["--mount", &mp], true);
    assert_eq!(
        again.info["contract"], contract,
        "a resumed devnet deploys nothing"
    );
    assert_eq!(again.token(), token);
    support::assert_same_tree(src.path(), &dst);
    let status = again.interrupt_group(Duration::from_secs(120));
    assert!(status.success(), "exit status {status}");
    assert_not_a_dead_mount(mnt.path());
}

#[test]
fn ctrl_c_with_the_node_frozen_exits_non_zero_naming_the_journal_and_the_next_up_uploads_it() {
    let mnt = tempdir("pxfs-devnet-mnt-");
    let mp = mnt.path().to_str().unwrap().to_string();
    // The mount gives up on the node after 2 s × (1 + 1).
    let quick = ["--mount", &mp, "--node-timeout", "2", "--node-retries", "1"];
    let mut devnet = TestDevnet::start_in(tempdir("pxfs-devnet-"), &quick, true);
    let token = devnet.token();
    let children = children_of(devnet.pid());

    let src = tempdir("pxfs-devnet-src-");
    support::generate_tree(src.path(), 23, 100, 1 << 20);
    let dst = mnt.path().join(token.to_string()).join("tree");
    support::sh(&format!(
        "cp -a {}/. {}",
        src.path().display(),
        dst.display()
    ));
    // The node freezes; what is closed now can only be staged and journaled.
    let node = node_pid(&devnet);
    unsafe { libc::kill(node as i32, libc::SIGSTOP) };
    let late = tempdir("pxfs-devnet-late-");
    std::fs::write(late.path().join("after-the-freeze"), vec![7u8; 100_000]).unwrap();
    // Both copies keep the file's mtime (`std::fs::copy` would stamp the reference with the
    // time of the copy, a second later than the mount's copy now and then).
    for to in [&dst, &src.path().to_path_buf()] {
        support::sh(&format!(
            "cp -a {}/after-the-freeze {}/",
            late.path().display(),
            to.display()
        ));
    }

    let started = Instant::now();
    let status = devnet.interrupt_group(Duration::from_secs(120));
    let took = started.elapsed();
    let stderr = devnet.stderr();
    unsafe { libc::kill(node as i32, libc::SIGCONT) };
    assert!(
        !status.success(),
        "exit status 0 with the node frozen; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("kept in the journal") && stderr.contains("pxfs devnet up --dir"),
        "no word of the journal and the next start:\n{stderr}"
    );
    assert!(took < Duration::from_secs(60), "stopping took {took:?}");
    assert_not_a_dead_mount(mnt.path());
    assert_no_children_left(children);

    // The next start replays the journal: everything is there.
    let dir = devnet.into_dir();
    let mut again = TestDevnet::start_in(dir, &["--mount", &mp], true);
    assert_eq!(again.token(), token);
    support::assert_same_tree(src.path(), &dst);
    let status = again.interrupt_group(Duration::from_secs(120));
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        again.stderr()
    );
    assert_not_a_dead_mount(mnt.path());
}

#[test]
fn a_second_ctrl_c_stops_waiting_for_a_frozen_node_at_once() {
    let mnt = tempdir("pxfs-devnet-mnt-");
    let mp = mnt.path().to_str().unwrap().to_string();
    // The default grace: the mount would wait for the node for 5 minutes.
    let mut devnet = TestDevnet::start_in(tempdir("pxfs-devnet-"), &["--mount", &mp], true);
    let token = devnet.token();
    let children = children_of(devnet.pid());
    // Loaded before the node freezes: creating a name needs its directory.
    let sdir = mnt.path().join(token.to_string());
    std::fs::write(sdir.join("before"), b"before the freeze").unwrap();
    let node = node_pid(&devnet);
    unsafe { libc::kill(node as i32, libc::SIGSTOP) };
    let staged = sdir.join("staged-only");
    std::fs::write(&staged, vec![5u8; 50_000]).unwrap();

    let started = Instant::now();
    devnet.signal_group(libc::SIGINT);
    std::thread::sleep(Duration::from_secs(2));
    devnet.signal(libc::SIGINT); // the second Ctrl-C
    let status = devnet.wait_exit(Duration::from_secs(120));
    let took = started.elapsed();
    let stderr = devnet.stderr();
    unsafe { libc::kill(node as i32, libc::SIGCONT) };
    assert!(!status.success(), "exit status 0; stderr:\n{stderr}");
    assert!(
        stderr.contains("kept in the journal") && stderr.contains("pxfs devnet up --dir"),
        "no word of the journal and the next start:\n{stderr}"
    );
    assert!(took < Duration::from_secs(30), "stopping took {took:?}");
    assert_not_a_dead_mount(mnt.path());
    assert_no_children_left(children);
}

/// `pxfs devnet up 2>&1 | tee log`, then Ctrl-C: the terminal's SIGINT ends `tee` first, so
/// every later message of the devnet goes to a pipe nobody reads. The devnet still drains
/// the mount and exits 0, and the next start has nothing to replay.
#[test]
fn ctrl_c_with_the_output_pipe_gone_still_drains_and_exits_zero() {
    use std::io::{BufRead, BufReader};
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;

    let mnt = tempdir("pxfs-devnet-mnt-");
    let mp = mnt.path().to_str().unwrap().to_string();
    let dir = tempdir("pxfs-devnet-");
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills the array with two new descriptors that nobody else owns.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut child = std::process::Command::new(support::PXFS)
        .args(["devnet", "up", "--dir"])
        .arg(dir.path())
        .args(["--mount", &mp])
        .stdin(std::process::Stdio::null())
        .stdout(write_end.try_clone().unwrap())
        .stderr(write_end)
        .process_group(0)
        .spawn()
        .unwrap();
    // `tee`: reads until the devnet is ready, then goes away.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(std::fs::File::from(read_end)).lines();
        let ready = lines.any(|l| l.is_ok_and(|l| l.trim() == "devnet ready"));
        let _ = tx.send(ready);
        // The reader (and with it the pipe's only read end) is dropped here.
    });
    let ready = rx.recv_timeout(Duration::from_secs(300));
    if ready != Ok(true) {
        let _ = child.kill();
        panic!("the devnet was not ready: {ready:?}");
    }
    std::thread::sleep(Duration::from_millis(200));
    let token = std::fs::read_dir(mnt.path())
        .unwrap()
        .next()
        .expect("one sNFT directory")
        .unwrap()
        .path();
    // Not fsynced: only the stop's drain uploads and commits it.
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(token.join("while-tee-runs"), &data).unwrap();

    // SAFETY: SIGINT to the devnet's process group, as a terminal's Ctrl-C.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the devnet did not stop within 120 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "exit status {status} with its output pipe gone (101 is a panic)"
    );
    assert_not_a_dead_mount(mnt.path());

    // The next start replays nothing (the stop committed everything) and shows the file.
    let log = dir.path().join("mount.log");
    let before = std::fs::read_to_string(&log).unwrap_or_default().len();
    let mut again = TestDevnet::start_in(dir, &["--mount", &mp], true);
    let name = token.file_name().unwrap();
    assert_eq!(
        std::fs::read(mnt.path().join(name).join("while-tee-runs")).unwrap(),
        data
    );
    let text = std::fs::read_to_string(again.dir.path().join("mount.log")).unwrap();
    let mounted: Vec<&str> = text[before..]
        .lines()
        .filter(|l| l.contains("sNFT mounted"))
        .collect();
    assert!(
        !mounted.is_empty() && mounted.iter().all(|l| l.contains("replayed=0")),
        "the next start replayed the journal: {mounted:?}"
    );
    let status = again.interrupt_group(Duration::from_secs(120));
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        again.stderr()
    );
    assert_not_a_dead_mount(mnt.path());
}
