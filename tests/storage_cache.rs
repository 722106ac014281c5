//! The read chunk cache: exact ranges, shared fetches, read-ahead, LRU eviction under the
//! size limit, restarts, and what a reader sees when the node goes away. Most tests use an
//! in-memory content node (the cache only ever calls `cat`), which also counts the fetches;
//! one reads a real file from a real `pxfs node`.

#[allow(dead_code)]
mod storage_support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pxfs::cache::{CacheError, CacheOptions, ChunkCache};
use pxfs::storage::NodeClient;
use storage_support::{
    Mock, NodeProcess, Reply, client_for, content_node, dead_url, pattern, raw_cid,
};

const CHUNK: u64 = 64 * 1024;

fn no_readahead() -> CacheOptions {
    CacheOptions {
        chunk_size: CHUNK,
        readahead_chunks: 0,
        ..CacheOptions::default()
    }
}

fn open(dir: &Path, limit: u64, client: NodeClient, options: CacheOptions) -> ChunkCache {
    ChunkCache::open_with(dir, limit, client, options).unwrap()
}

async fn node_with(data: &Bytes, delay: Duration) -> Mock {
    content_node(HashMap::from([(raw_cid(data), data.clone())]), delay).await
}

/// Bytes of the cache's pack files.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with("pack-"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// A chunk's record header in a pack is under this many bytes.
const HEADER: u64 = 200;

/// What `chunks` whole chunks take in packs: their bytes and a header each.
fn on_disk(chunks: u64) -> std::ops::RangeInclusive<u64> {
    chunks * CHUNK..=chunks * (CHUNK + HEADER)
}

/// Whether chunk `index` of `cid` is on disk, as a reader that does not own the cache sees it.
fn cached(dir: &Path, cid: &str, index: u64) -> bool {
    pxfs::cache::CachedChunks::open(dir)
        .and_then(|c| c.read(cid, index * CHUNK, 10))
        .is_some()
}

#[tokio::test]
async fn reads_return_exactly_the_requested_bytes_across_chunk_boundaries() {
    let size = 5 * CHUNK as usize + 777;
    let data = pattern(size, 1);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30, node.client(5, 0), no_readahead());
    let c = CHUNK as usize;
    for (offset, len) in [
        (0, 1),
        (c - 1, 2),
        (c, c),
        (c - 10, 3 * c), // spans four chunks
        (2 * c + 5, 100),
        (size - 777, 777),
        (size - 1, 1),
    ] {
        let got = cache
            .read(&cid, size as u64, offset as u64, len as u32)
            .await
            .unwrap();
        assert!(
            got[..] == data[offset..offset + len],
            "offset {offset} len {len}"
        );
    }
}

#[tokio::test]
async fn reads_are_short_only_at_the_end_of_the_file() {
    let size = 2 * CHUNK as usize + 10;
    let data = pattern(size, 2);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30, node.client(5, 0), no_readahead());
    let tail = cache
        .read(&cid, size as u64, size as u64 - 5, 4096)
        .await
        .unwrap();
    assert!(tail[..] == data[size - 5..]);
    let past = cache
        .read(&cid, size as u64, size as u64 + 100, 4096)
        .await
        .unwrap();
    assert!(past.is_empty());
    let empty_file = cache.read(&cid, 0, 0, 4096).await.unwrap();
    assert!(empty_file.is_empty());
}

#[tokio::test]
async fn concurrent_readers_of_a_missing_chunk_share_one_fetch() {
    let data = pattern(CHUNK as usize, 3);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::from_millis(300)).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30, node.client(5, 0), no_readahead());
    let readers = (0..8u64).map(|i| {
        let (cache, cid) = (cache.clone(), cid.clone());
        tokio::spawn(async move { cache.read(&cid, CHUNK, i * 1000, 500).await })
    });
    for (i, r) in futures::future::join_all(readers)
        .await
        .into_iter()
        .enumerate()
    {
        let got = r.unwrap().unwrap();
        assert!(got[..] == data[i * 1000..i * 1000 + 500]);
    }
    assert_eq!(node.hits_on("/api/v0/block/get"), 1);
}

#[tokio::test]
async fn a_cached_chunk_is_not_fetched_again() {
    let data = pattern(CHUNK as usize, 4);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30, node.client(5, 0), no_readahead());
    cache.read(&cid, CHUNK, 0, 10).await.unwrap();
    cache.read(&cid, CHUNK, 100, 10).await.unwrap();
    cache.read(&cid, CHUNK, 0, CHUNK as u32).await.unwrap();
    assert_eq!(node.hits_on("/api/v0/block/get"), 1);
}

#[tokio::test]
async fn cached_chunks_are_still_read_when_the_node_is_down() {
    let data = pattern(2 * CHUNK as usize, 5);
    let cid = raw_cid(&data);
    let mut node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30, node.client(1, 1), no_readahead());
    cache.read(&cid, 2 * CHUNK, 0, CHUNK as u32).await.unwrap();
    node.stop().await;
    let again = cache.read(&cid, 2 * CHUNK, 10, 20).await.unwrap();
    assert!(again[..] == data[10..30]);
}

#[tokio::test]
async fn an_uncached_chunk_with_the_node_down_fails_within_bounded_time() {
    let data = pattern(2 * CHUNK as usize, 6);
    let cid = raw_cid(&data);
    let mut node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30, node.client(1, 2), no_readahead());
    cache.read(&cid, 2 * CHUNK, 0, 10).await.unwrap();
    node.stop().await;
    let started = Instant::now();
    let err = cache
        .read(&cid, 2 * CHUNK, CHUNK, 10)
        .await
        .expect_err("chunk 1 was never fetched");
    assert!(matches!(err, CacheError::Fetch { index: 1, .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_node_that_stops_answering_fails_the_read_instead_of_hanging_it() {
    let data = pattern(CHUNK as usize, 7);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::from_secs(60)).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30, node.client(1, 1), no_readahead());
    let started = Instant::now();
    let err = cache.read(&cid, CHUNK, 0, 10).await.unwrap_err();
    assert!(matches!(err, CacheError::Fetch { .. }), "{err:?}");
    // One timeout, a ~100 ms backoff, another timeout.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_cache_stays_under_its_limit_by_evicting_the_least_recently_used_chunk() {
    let size = 4 * CHUNK;
    let data = pattern(size as usize, 8);
    let cid = raw_cid(&data);
    let mut node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    // Room for three chunks; a pack is a 32nd of the limit, at least one chunk: each holds one.
    let limit = 3 * (CHUNK + HEADER);
    let cache = open(dir.path(), limit, node.client(1, 0), no_readahead());
    for chunk in [0, 1, 2, 0, 3] {
        // Chunk 0 is read again before chunk 3 arrives, so chunk 1 is the oldest then.
        cache.read(&cid, size, chunk * CHUNK, 10).await.unwrap();
    }
    assert!(cache.cached_bytes() <= limit);
    assert_eq!(cache.cached_bytes(), dir_bytes(dir.path()));
    assert!(
        dir_bytes(dir.path()) <= *on_disk(3).end(),
        "{}",
        dir_bytes(dir.path())
    );

    node.stop().await;
    for chunk in [0, 2, 3] {
        cache
            .read(&cid, size, chunk * CHUNK, 10)
            .await
            .unwrap_or_else(|e| panic!("chunk {chunk} should be cached: {e}"));
    }
    assert!(
        cache.read(&cid, size, CHUNK, 10).await.is_err(),
        "chunk 1 should have been evicted"
    );
}

#[tokio::test]
async fn the_cache_survives_a_restart() {
    let size = 3 * CHUNK;
    let data = pattern(size as usize, 9);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = open(dir.path(), 1 << 30, node.client(1, 0), no_readahead());
        cache.read(&cid, size, 0, size as u32).await.unwrap();
    }
    // Reopened against a node that is gone: everything must come from disk.
    let reopened = open(
        dir.path(),
        1 << 30,
        client_for(&dead_url(), 1, 0),
        no_readahead(),
    );
    assert!(on_disk(3).contains(&reopened.cached_bytes()));
    let got = reopened.read(&cid, size, 0, size as u32).await.unwrap();
    assert!(got[..] == data[..]);
}

#[tokio::test]
async fn reopening_with_a_smaller_limit_evicts_down_to_it() {
    let size = 4 * CHUNK;
    let data = pattern(size as usize, 10);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = open(dir.path(), 1 << 30, node.client(1, 0), no_readahead());
        cache.read(&cid, size, 0, size as u32).await.unwrap();
    }
    let reopened = open(dir.path(), 2 * CHUNK, node.client(1, 0), no_readahead());
    assert!(reopened.cached_bytes() <= 2 * CHUNK);
    assert!(dir_bytes(dir.path()) <= *on_disk(2).end());
}

#[tokio::test]
async fn leftovers_of_a_crash_are_cleaned_up_at_open() {
    let cid = raw_cid(b"a chunk left by a crash");
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&dead_url(), 1, 0);
    drop(open(dir.path(), 1 << 30, client.clone(), no_readahead()));
    // What the one-file-per-chunk cache of earlier versions left.
    std::fs::write(dir.path().join(".tmp-0123"), b"half a chunk").unwrap();
    std::fs::write(dir.path().join(format!("{cid}.0")), b"").unwrap();
    let cache = open(dir.path(), 1 << 30, client, no_readahead());
    assert_eq!(cache.cached_bytes(), 0);
    assert!(!dir.path().join(".tmp-0123").exists());
    assert!(!dir.path().join(format!("{cid}.0")).exists());
    assert!(cache.read(&cid, 10, 0, 10).await.is_err());
}

#[tokio::test]
async fn a_chunk_cut_short_or_damaged_on_disk_is_fetched_again_never_served() {
    let size = 3 * CHUNK;
    let data = pattern(size as usize, 12);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    {
        let cache = open(dir.path(), 1 << 30, node.client(1, 0), no_readahead());
        cache.read(&cid, size, 0, size as u32).await.unwrap();
    }
    // One pack holds the three chunks in order: cut the last one short (a crash while it
    // was written) and flip a byte of the first (the disk).
    let pack = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("pack-")
        })
        .expect("a pack");
    // The chunks were fetched at once and landed in the order their fetches ended: find
    // which record holds which (the header: magic, cid length, 0, index, length, two CRCs).
    let bytes = std::fs::read(&pack).unwrap();
    let mut records = Vec::new();
    let mut at = 0usize;
    while at + 28 <= bytes.len() {
        let field = |from: usize, n: usize| {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&bytes[at + from..at + from + n]);
            u64::from_le_bytes(b)
        };
        assert_eq!(&bytes[at..at + 4], b"PXCK");
        let (cid_len, index, len) = (field(4, 2) as usize, field(8, 8), field(16, 4) as usize);
        records.push((index, at + 28 + cid_len));
        at += 28 + cid_len + len;
    }
    assert_eq!(records.len(), 3, "three records in the pack");
    let (last, _) = records[2];
    let (_, first_data) = records.iter().find(|(i, _)| *i == 0).copied().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&pack).unwrap();
    f.set_len(bytes.len() as u64 - 5).unwrap();
    if last != 0 {
        let flipped = [data[10] ^ 0xff];
        std::os::unix::fs::FileExt::write_all_at(&f, &flipped, first_data as u64 + 10).unwrap();
    }
    drop(f);
    // Chunk 0 is damaged (cut short when it is last, else a byte flipped), and the chunk
    // in the last record is cut short.
    let whole = (0..3u64).find(|i| *i != 0 && *i != last).unwrap();

    // Against a node that is gone: what is whole and right is served, nothing else.
    let reopened = open(
        dir.path(),
        1 << 30,
        client_for(&dead_url(), 1, 0),
        no_readahead(),
    );
    assert!(
        on_disk(2).contains(&reopened.cached_bytes()),
        "the cut chunk is not indexed"
    );
    let at = whole * CHUNK;
    let kept = reopened.read(&cid, size, at, CHUNK as u32).await.unwrap();
    assert!(kept[..] == data[at as usize..(at + CHUNK) as usize]);
    assert!(
        reopened.read(&cid, size, 0, 100).await.is_err(),
        "the damaged chunk must be fetched again, not served"
    );
    assert!(reopened.read(&cid, size, last * CHUNK, 100).await.is_err());

    // With the node back, both come back right.
    let again = open(dir.path(), 1 << 30, node.client(1, 0), no_readahead());
    let all = again.read(&cid, size, 0, size as u32).await.unwrap();
    assert!(all[..] == data[..]);
}

#[tokio::test]
async fn sequential_reading_fetches_the_next_chunks_ahead() {
    let size = 6 * CHUNK;
    let data = pattern(size as usize, 11);
    let cid = raw_cid(&data);
    let mut node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        chunk_size: CHUNK,
        readahead_chunks: 2,
        ..CacheOptions::default()
    };
    let cache = open(dir.path(), 1 << 30, node.client(1, 0), options);
    cache.read(&cid, size, 0, 4096).await.unwrap();
    // Chunks 1 and 2 arrive in the background.
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.cached_bytes() < 3 * CHUNK && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;
    let ahead = cache
        .read(&cid, size, CHUNK, 2 * CHUNK as u32)
        .await
        .unwrap();
    assert!(ahead[..] == data[CHUNK as usize..3 * CHUNK as usize]);
    assert!(
        cache.read(&cid, size, 4 * CHUNK, 10).await.is_err(),
        "read-ahead is bounded: chunk 4 was not fetched"
    );
}

#[tokio::test]
async fn random_reads_do_not_trigger_read_ahead() {
    let size = 8 * CHUNK;
    let data = pattern(size as usize, 12);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        chunk_size: CHUNK,
        readahead_chunks: 2,
        ..CacheOptions::default()
    };
    let cache = open(dir.path(), 1 << 30, node.client(1, 0), options);
    cache.read(&cid, size, 5 * CHUNK, 10).await.unwrap();
    cache.read(&cid, size, 2 * CHUNK, 10).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(node.hits_on("/api/v0/block/get"), 2);
}

#[tokio::test]
async fn a_seeded_upload_is_read_without_the_node() {
    let size = 2 * CHUNK as usize + 3;
    let data = pattern(size, 13);
    let cid = raw_cid(&data);
    let dir = tempfile::tempdir().unwrap();
    let staged = dir.path().join("staged");
    std::fs::write(&staged, &data).unwrap();
    let cache_dir = dir.path().join("cache");
    let cache = open(
        &cache_dir,
        1 << 30,
        client_for(&dead_url(), 1, 0),
        no_readahead(),
    );
    cache.insert_local(&cid, &staged).unwrap();
    let got = cache.read(&cid, size as u64, 0, size as u32).await.unwrap();
    assert!(got[..] == data[..]);
}

#[tokio::test]
async fn a_node_answering_short_is_an_error_not_a_silently_short_read() {
    let data = pattern(CHUNK as usize / 2, 14);
    let cid = raw_cid(&data); // the node has less than the file size says
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = open(dir.path(), 1 << 30, node.client(1, 0), no_readahead());
    let err = cache.read(&cid, CHUNK, 0, CHUNK as u32).await.unwrap_err();
    assert!(matches!(err, CacheError::ShortChunk { .. }), "{err:?}");
}

#[tokio::test]
async fn names_that_are_not_cids_never_become_paths() {
    let dir = tempfile::tempdir().unwrap();
    let cache = open(
        dir.path(),
        1 << 30,
        client_for(&dead_url(), 1, 0),
        no_readahead(),
    );
    let err = cache.read("../../etc/passwd", 10, 0, 10).await.unwrap_err();
    assert!(matches!(err, CacheError::BadCid(_)), "{err:?}");
}

/// A run (one request for many objects, the read-ahead of sealed chunks) gives each object
/// whole and in order, whether it arrived within one piece of the node's answer or across
/// several: objects of many sizes, some cached already, from a real `pxfs node`.
#[tokio::test]
async fn a_run_gives_every_object_whole_however_the_answer_is_cut() {
    use futures::StreamExt;
    let node = NodeProcess::start();
    let sizes = [
        1usize, 7, 131_088, 65_536, 3, 131_088, 100_000, 2, 131_088, 40_000,
    ];
    let mut objects = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let data = pattern(*size, 40 + i as u8);
        let cid = node
            .client()
            .add_bytes("o", data.clone())
            .await
            .unwrap()
            .hash;
        objects.push((cid, data));
    }
    let dir = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        chunk_size: 256 * 1024,
        ..CacheOptions::default()
    };
    let cache = open(dir.path(), 1 << 30, client_for(&node.url, 5, 0), options);
    // Two objects already cached: the run takes them from disk and the rest from the node.
    for (cid, data) in [&objects[2], &objects[6]] {
        let got = cache.read_sealed(cid, data.len() as u64).await.unwrap();
        cache.keep(cid, got);
    }
    // `keep` writes in the background.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(cached(dir.path(), &objects[2].0, 0) && cached(dir.path(), &objects[6].0, 0)) {
        assert!(
            Instant::now() < deadline,
            "the kept objects never reached the cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..3 {
        let run: Vec<(String, u64)> = objects
            .iter()
            .map(|(cid, data)| (cid.clone(), data.len() as u64))
            .collect();
        let got: Vec<Bytes> = cache
            .read_sealed_run(run)
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(got.len(), objects.len());
        for (i, (got, (_, want))) in got.iter().zip(&objects).enumerate() {
            assert!(got == want, "object {i} ({} bytes) differs", want.len());
        }
    }
}

/// Runs asked for at once (a reader's read-ahead) go to the node in turn, not all at once:
/// at most 8 MiB of them out (on a link shared by all, each would arrive late and all at
/// the same time, then the link would stand idle). Six runs of 4 MiB asked together: two
/// go at once, each of the others once an earlier one's bytes arrived, in the order asked,
/// and every object arrives whole. Run r is answered after 200 + 100·r ms, so that no two
/// runs' bytes arrive together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_asked_at_once_go_out_in_turn_within_the_bytes_out_bound() {
    use futures::StreamExt;
    const OBJECT: usize = 1 << 20;
    const DELAY: Duration = Duration::from_millis(200);
    const LATER: Duration = Duration::from_millis(100);
    let runs: Vec<Vec<(String, Bytes)>> = (0..6u8)
        .map(|r| {
            (0..4u8)
                .map(|i| {
                    let data = pattern(OBJECT, r * 4 + i);
                    (raw_cid(&data), data)
                })
                .collect()
        })
        .collect();
    let files: HashMap<String, Bytes> = runs.iter().flatten().cloned().collect();
    let run_of: HashMap<String, u32> = (0..runs.len())
        .map(|r| (runs[r][0].0.clone(), r as u32))
        .collect();
    let asked_at = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let node = {
        let asked_at = asked_at.clone();
        Mock::start(move |seen, _| {
            assert_eq!(seen.path, "/api/v0/cat", "a run is one cat");
            let args: Vec<&str> = seen
                .query
                .iter()
                .filter(|(k, _)| k == "arg")
                .map(|(_, v)| v.as_str())
                .collect();
            let args_first = args[0].to_owned();
            asked_at
                .lock()
                .unwrap()
                .push((started.elapsed(), args_first.clone()));
            let mut body = Vec::new();
            for cid in args {
                body.extend_from_slice(&files[cid]);
            }
            Reply::bytes(body.into()).after(DELAY + LATER * run_of[args_first.as_str()])
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        chunk_size: OBJECT as u64,
        ..no_readahead()
    };
    let cache = open(dir.path(), 1 << 30, node.client(30, 0), options);
    let reads: Vec<_> = runs
        .iter()
        .map(|run| {
            let asked = run
                .iter()
                .map(|(cid, data)| (cid.clone(), data.len() as u64))
                .collect();
            cache.read_sealed_run(asked).collect::<Vec<_>>()
        })
        .collect();
    let got = futures::future::join_all(reads).await;
    for (r, (got, run)) in got.iter().zip(&runs).enumerate() {
        assert_eq!(got.len(), run.len(), "run {r}");
        for (got, (_, want)) in got.iter().zip(run) {
            assert!(got.as_ref().unwrap() == want, "run {r} differs");
        }
    }
    let asked_at = asked_at.lock().unwrap().clone();
    assert_eq!(asked_at.len(), runs.len(), "{asked_at:?}");
    let at_once = asked_at.iter().filter(|(t, _)| *t < DELAY / 2).count();
    assert_eq!(at_once, 2, "8 MiB of runs out at first: {asked_at:?}");
    // In the order asked (each run named by its first object).
    let mut order: Vec<_> = asked_at.clone();
    order.sort_by_key(|(t, _)| *t);
    let firsts: Vec<String> = runs.iter().map(|run| run[0].0.clone()).collect();
    let (first_two, rest) = firsts.split_at(2);
    let asked: Vec<String> = order.into_iter().map(|(_, cid)| cid).collect();
    let mut asked_first = asked[..2].to_vec();
    asked_first.sort();
    let mut want_first = first_two.to_vec();
    want_first.sort();
    assert_eq!(asked_first, want_first, "the first two asked go first");
    assert_eq!(&asked[2..], rest, "the others in the order asked");
    // The last waited for two earlier ones in turn.
    assert!(
        asked_at.iter().map(|(t, _)| *t).max().unwrap() >= DELAY * 2,
        "{asked_at:?}"
    );
}

#[tokio::test]
async fn a_real_file_is_read_through_the_cache_and_survives_the_node_dying() {
    let mut node = NodeProcess::start();
    let size = 3 * (1 << 20) + 4321;
    let data = pattern(size, 15);
    let cid = node
        .client()
        .add_bytes("f", data.clone())
        .await
        .unwrap()
        .hash;
    let never_read = node
        .client()
        .add_bytes("g", pattern(100_000, 16))
        .await
        .unwrap()
        .hash;
    let dir = tempfile::tempdir().unwrap();
    let cache = ChunkCache::open(dir.path(), 1 << 30, client_for(&node.url, 2, 1)).unwrap();
    let mut got = Vec::new();
    let mut offset = 0u64;
    while (offset as usize) < size {
        // 128 KiB reads, as the kernel issues them.
        let piece = cache
            .read(&cid, size as u64, offset, 128 * 1024)
            .await
            .unwrap();
        assert!(!piece.is_empty());
        offset += piece.len() as u64;
        got.extend_from_slice(&piece);
    }
    assert!(got[..] == data[..]);
    node.kill();
    let again = cache
        .read(&cid, size as u64, (1 << 20) - 7, 14)
        .await
        .unwrap();
    assert!(again[..] == data[(1 << 20) - 7..(1 << 20) + 7]);

    let started = Instant::now();
    let err = cache.read(&never_read, 100_000, 0, 4096).await.unwrap_err();
    assert!(matches!(err, CacheError::Fetch { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_large_upload_is_not_copied_into_the_cache() {
    let cid = raw_cid(b"a large upload");
    let dir = tempfile::tempdir().unwrap();
    let staged = dir.path().join("staged");
    let file = std::fs::File::create(&staged).unwrap();
    file.set_len(pxfs::cache::MAX_SEED_BYTES + 1).unwrap();
    let cache = open(
        &dir.path().join("cache"),
        1 << 40,
        client_for(&dead_url(), 1, 0),
        no_readahead(),
    );
    cache.insert_local(&cid, &staged).unwrap();
    assert_eq!(cache.cached_bytes(), 0);
}

#[tokio::test]
async fn many_tiny_files_are_accounted_by_the_disk_space_they_take() {
    let files: HashMap<String, Bytes> = (0..10)
        .map(|i| pattern(10, i as u8))
        .map(|data| (raw_cid(&data), data))
        .collect();
    let cids: Vec<String> = (0..10).map(|i| raw_cid(&pattern(10, i as u8))).collect();
    let node = content_node(files, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    // Room for 500 bytes: ten 10-byte files, each with its record header, cannot all stay.
    let cache = open(dir.path(), 500, node.client(1, 0), no_readahead());
    for cid in &cids {
        cache.read(cid, 10, 0, 10).await.unwrap();
    }
    assert!(cache.cached_bytes() <= 500);
    assert_eq!(
        cache.cached_bytes(),
        dir_bytes(dir.path()),
        "what the disk holds"
    );
    let kept = cids.iter().filter(|cid| cached(dir.path(), cid, 0)).count();
    assert!((3..10).contains(&kept), "{kept} of 10 kept");
    assert!(cached(dir.path(), &cids[9], 0), "the newest is kept");
    assert!(!cached(dir.path(), &cids[0], 0), "the oldest is not");
}

#[tokio::test]
async fn what_was_used_recently_is_kept_across_a_restart() {
    let size = 3 * CHUNK;
    let data = pattern(size as usize, 17);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    {
        // A pack a chunk (see above); chunk 0, read again from the older half, is copied
        // forward to the newest pack.
        let cache = open(
            dir.path(),
            3 * (CHUNK + HEADER),
            node.client(1, 0),
            no_readahead(),
        );
        for chunk in [0, 1, 2, 0] {
            cache.read(&cid, size, chunk * CHUNK, 10).await.unwrap();
        }
    }
    // Reopened with room for two chunks: the least recently used one (1) goes.
    let reopened = open(
        dir.path(),
        2 * (CHUNK + HEADER),
        client_for(&dead_url(), 1, 0),
        no_readahead(),
    );
    for chunk in [0, 2] {
        reopened
            .read(&cid, size, chunk * CHUNK, 10)
            .await
            .unwrap_or_else(|e| panic!("chunk {chunk} should have been kept: {e}"));
    }
    assert!(reopened.read(&cid, size, CHUNK, 10).await.is_err());
}

#[tokio::test]
async fn the_cache_gives_its_space_back_for_data_that_must_be_kept_oldest_chunks_first() {
    let size = 4 * CHUNK as usize;
    let data = pattern(size, 41);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    // A limit of four chunks: a pack holds one (packs are a 32nd of the limit, at least
    // one chunk), so what is given back can be counted in chunks.
    let cache = open(
        dir.path(),
        4 * (CHUNK + HEADER),
        node.client(5, 0),
        no_readahead(),
    );
    for i in 0..4 {
        cache
            .read(&cid, size as u64, i * CHUNK, CHUNK as u32)
            .await
            .unwrap();
    }
    assert!(on_disk(4).contains(&dir_bytes(dir.path())));

    // Asked for a chunk and a half: two chunks go, the two read last stay.
    let freed = cache.give_back(CHUNK + CHUNK / 2);
    assert!(on_disk(2).contains(&freed), "{freed}");
    assert!(on_disk(2).contains(&dir_bytes(dir.path())));
    assert_eq!(cache.cached_bytes(), dir_bytes(dir.path()));
    assert!(!cached(dir.path(), &cid, 0));
    assert!(!cached(dir.path(), &cid, 1));
    assert!(cached(dir.path(), &cid, 2));
    assert!(cached(dir.path(), &cid, 3));
    // What it gave back is fetched again when read.
    let again = cache.read(&cid, size as u64, 0, 100).await.unwrap();
    assert!(again[..] == data[..100]);
}

#[tokio::test]
async fn below_the_disk_reserve_chunks_are_served_but_not_kept() {
    let data = pattern(CHUNK as usize, 42);
    let cid = raw_cid(&data);
    let node = node_with(&data, Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let options = CacheOptions {
        // More than any disk has free: the cache must never take the room.
        keep_free: u64::MAX / 2,
        ..no_readahead()
    };
    let cache = open(dir.path(), 1 << 30, node.client(5, 0), options);
    let got = cache.read(&cid, CHUNK, 0, CHUNK as u32).await.unwrap();
    assert!(got[..] == data[..]);
    assert_eq!(dir_bytes(dir.path()), 0);
    assert_eq!(cache.cached_bytes(), 0);
}

/// Readers at the same time as evictions and copies forward: a small cache, many files,
/// every read checked against the file. Seeded; each seed runs its readers concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_readers_through_a_churning_cache_always_get_the_right_bytes() {
    use rand::{Rng, SeedableRng};
    let files: Vec<Bytes> = (0..6)
        .map(|i| pattern(8 * CHUNK as usize, 60 + i))
        .collect();
    let cids: Vec<String> = files.iter().map(|d| raw_cid(d)).collect();
    let node = content_node(
        cids.iter().cloned().zip(files.iter().cloned()).collect(),
        Duration::ZERO,
    )
    .await;
    for seed in 0..5u64 {
        let dir = tempfile::tempdir().unwrap();
        // Room for ten of the 48 chunks, a pack a chunk: nearly every read evicts one.
        let cache = open(
            dir.path(),
            10 * (CHUNK + HEADER),
            node.client(5, 0),
            no_readahead(),
        );
        let readers = (0..16u64).map(|r| {
            let (cache, files, cids) = (cache.clone(), files.clone(), cids.clone());
            tokio::spawn(async move {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 100 + r);
                for _ in 0..60 {
                    let f = rng.random_range(0..files.len());
                    let size = files[f].len() as u64;
                    let offset = rng.random_range(0..size);
                    let len = rng.random_range(1..=2 * CHUNK).min(size - offset);
                    let got = cache
                        .read(&cids[f], size, offset, len as u32)
                        .await
                        .unwrap();
                    let want = &files[f][offset as usize..(offset + len) as usize];
                    assert!(got[..] == want[..], "seed {seed} reader {r}: wrong bytes");
                }
            })
        });
        for reader in futures::future::join_all(readers).await {
            reader.unwrap();
        }
        assert!(cache.cached_bytes() <= 10 * (CHUNK + HEADER));
        assert_eq!(cache.cached_bytes(), dir_bytes(dir.path()), "seed {seed}");
    }
}

/// A chunk its reader authenticates itself (a sealed chunk) comes back unhashed, and enters
/// the cache only once the reader says it opened: bytes a lying node gave are never kept.
#[tokio::test]
async fn an_unchecked_chunk_is_cached_only_once_its_reader_kept_it() {
    let good = pattern(CHUNK as usize / 2, 70);
    let cid = raw_cid(&good);
    let lie = pattern(good.len(), 71);
    // A node that answers other bytes under the CID.
    let liar = content_node(HashMap::from([(cid.clone(), lie.clone())]), Duration::ZERO).await;
    let dir = tempfile::tempdir().unwrap();
    let len = good.len() as u64;
    let cache = open(dir.path(), 1 << 30, liar.client(1, 0), no_readahead());
    let got = cache.read_sealed(&cid, len).await.unwrap();
    assert!(got[..] == lie[..], "unhashed: what the node gave");
    assert_eq!(
        cache.cached_bytes(),
        0,
        "not kept before the reader opened it"
    );
    assert_eq!(dir_bytes(dir.path()), 0);
    // The checked read of the same CID refuses those bytes.
    assert!(cache.read(&cid, len, 0, len as u32).await.is_err());

    // From an honest node, kept once opened, and then read without the node.
    let honest = node_with(&good, Duration::ZERO).await;
    let cache = open(dir.path(), 1 << 30, honest.client(1, 0), no_readahead());
    let got = cache.read_sealed(&cid, len).await.unwrap();
    assert!(got[..] == good[..]);
    cache.keep(&cid, got);
    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.cached_bytes() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let offline = open(
        dir.path(),
        1 << 30,
        client_for(&dead_url(), 1, 0),
        no_readahead(),
    );
    let again = offline.read_sealed(&cid, len).await.unwrap();
    assert!(again[..] == good[..]);
}
