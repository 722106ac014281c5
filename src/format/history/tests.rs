use super::*;
use crate::format::store::{MemStore, raw_cid};
use crate::format::{DataKey, PageStore, TreeCrypto, page, prolly};

const H: i64 = 3600 * NS;
const DAY: i64 = 24 * H;
/// 2026-11-25T00:00:00Z.
const T0: i64 = 1_795_564_800 * NS;

fn attrs() -> Attrs {
    Attrs {
        mode: 0o755,
        uid: 1000,
        gid: 1000,
        mtime_ns: 1_700_000_000_000_000_000,
        ctime_ns: 1_700_000_000_000_000_000,
    }
}

fn version(t: i64) -> Version {
    let dir = raw_cid(&t.to_be_bytes());
    Version::new(t, attrs(), vec![], dir, None, 1000).unwrap()
}

fn times(vs: &[Version]) -> Vec<i64> {
    vs.iter().map(Version::t).collect()
}

#[test]
fn snapshot_names_are_the_utc_second_in_basic_iso_form() {
    assert_eq!(snapshot_name(T0), "20261125T000000Z");
    assert_eq!(
        snapshot_name(T0 + 20 * H + 41 * 60 * NS + 7 * NS + 999),
        "20261125T204107Z"
    );
    assert_eq!(snapshot_name(0), "19700101T000000Z");
    assert_eq!(
        parse_snapshot_name("20261125T204107Z"),
        Some(T0 / NS + 20 * 3600 + 41 * 60 + 7)
    );
    assert_eq!(parse_snapshot_name("19700101T000000Z"), Some(0));
    for bad in [
        "20260231T000000Z",
        "20261125T246000Z",
        "20261125 204107Z",
        "2026112T2041070Z",
        "+2026112T204107Z",
        "20261125T204160Z",
        "99991231T235959Z",
        "x",
    ] {
        assert_eq!(parse_snapshot_name(bad), None, "{bad}");
    }
    // The calendar has its leap days: the second before 2024-03-01 is in February.
    let march = parse_snapshot_name("20240301T000000Z").unwrap() * NS;
    assert_eq!(snapshot_name(march - NS), "20240229T235959Z");
}

#[test]
fn the_default_policy_keeps_the_last_hour_then_hourly_then_daily() {
    let now = T0 + 40 * DAY + 12 * H;
    // A commit every 10 minutes for 40 days.
    let all: Vec<i64> = (0..40 * 24 * 6 + 12 * 6)
        .map(|i| T0 + i * 600 * NS)
        .collect();
    let current = now;
    let kept = retain(&all, current, &Policy::default(), now);
    let age = |t: &i64| now - t;
    // The last hour: every commit (11:10 … 11:50; 12:00 is "now", the current version).
    assert_eq!(kept.iter().filter(|t| age(t) < H).count(), 5);
    // Hourly for two days: one per hour, the latest (xx:50).
    let hourly: Vec<&i64> = kept
        .iter()
        .filter(|t| age(t) >= H && age(t) < 47 * H)
        .collect();
    assert!(hourly.iter().all(|t| (**t / NS) % 3600 == 3000));
    // Nothing older than 30 days, and daily ones are the day's last commit (23:50).
    assert!(kept.iter().all(|t| age(t) < 30 * DAY));
    let old: Vec<&i64> = kept.iter().filter(|t| age(t) > 2 * DAY).collect();
    assert!(!old.is_empty());
    assert!(old.iter().all(|t| (**t / NS) % 86_400 == 86_400 - 600));
    assert!(
        !kept.contains(&current),
        "the current version is the root, not history"
    );
}

#[test]
fn history_off_keeps_nothing_and_one_version_per_second_at_most() {
    let ts = [T0, T0 + 1, T0 + NS / 2, T0 + NS];
    assert!(retain(&ts, T0 + 2 * NS, &Policy::OFF, T0 + 2 * NS).is_empty());
    let p = Policy {
        keep_all_secs: 60,
        ..Policy::OFF
    };
    assert_eq!(
        retain(&ts, T0 + 2 * NS, &p, T0 + 2 * NS),
        vec![T0 + NS / 2, T0 + NS]
    );
    // A version older than the policy's reach is dropped.
    assert_eq!(
        retain(&[T0], T0 + 61 * NS, &p, T0 + 61 * NS),
        Vec::<i64>::new()
    );
}

/// The property the issue asks of the policy: applied at every commit over simulated time,
/// it keeps exactly the versions it promises (what applying it once to every commit made so
/// far keeps).
#[test]
fn applying_the_policy_at_every_commit_keeps_what_applying_it_once_keeps() {
    let policies = [
        Policy::default(),
        Policy {
            keep_all_secs: 300,
            hourly: 3,
            daily: 2,
            monthly: 2,
        },
        Policy {
            keep_all_secs: 0,
            hourly: 0,
            daily: 0,
            monthly: 3,
        },
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rnd = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for policy in policies {
        let mut t = T0;
        let mut history: Vec<Version> = Vec::new();
        let mut current = version(t);
        let mut commits = vec![t];
        for _ in 0..1_500 {
            // Bursts within a second, minutes, hours, days apart.
            t +=
                [NS / 3, 40 * NS, 20 * 60 * NS, 5 * H, 3 * DAY][rnd(5) as usize] + rnd(1000) as i64;
            let replaced = vec![current.clone()];
            history = next(history, replaced, t, &policy, t);
            current = version(t);
            let once = retain(&commits, t, &policy, t);
            commits.push(t);
            assert_eq!(times(&history), once, "{policy:?} at {}", snapshot_name(t));
        }
    }
}

#[test]
fn a_merge_keeps_both_sides_versions_until_the_policy_drops_them() {
    let ours: Vec<Version> = [1, 3, 5].map(|m| version(T0 + m * 60 * NS)).into();
    let theirs: Vec<Version> = [2, 3, 4].map(|m| version(T0 + m * 60 * NS)).into();
    let u = union(ours.clone(), theirs.clone());
    assert_eq!(times(&u), [1, 2, 3, 4, 5].map(|m| T0 + m * 60 * NS));
    assert_eq!(
        u,
        union(theirs.clone(), ours.clone()),
        "the same whichever side is ours"
    );
    // Two different records at the same time: the same one wins on both machines.
    let mut other = version(T0 + 3 * 60 * NS);
    other.dir = raw_cid(b"another tree");
    let a = union(ours.clone(), vec![other.clone()]);
    let b = union(vec![other], ours.clone());
    assert_eq!(a, b);
    // Then retention: both sides' roots become history, and the policy applies.
    let now = T0 + 10 * 60 * NS;
    let p = Policy {
        keep_all_secs: 7 * 60,
        ..Policy::OFF
    };
    let merged = next(
        u,
        vec![version(T0 + 6 * 60 * NS), version(T0 + 7 * 60 * NS)],
        now,
        &p,
        now,
    );
    assert_eq!(times(&merged), [4, 5, 6, 7].map(|m| T0 + m * 60 * NS));
}

#[test]
fn a_history_table_pages_like_a_directory_and_refuses_a_time_before_1970() {
    let crypto = TreeCrypto::sealed(&DataKey::from_bytes([3; 32]));
    let mut store = MemStore::new();
    // An hour of commits every second: 3,600 versions.
    let vs: Vec<Version> = (0..3_600).map(|s| version(T0 + s * NS)).collect();
    let top = prolly::build(&mut store, &crypto, vs.clone()).unwrap();
    let stats = prolly::check::<Version>(&mut store, &crypto, &top).unwrap();
    assert_eq!(stats.records, 3_600);
    assert!(stats.depth >= 2);
    assert_eq!(
        prolly::records::<Version>(&mut store, &crypto, &top).unwrap(),
        vs
    );
    // One commit later: the oldest version dropped, one added; a few pages rewritten.
    store.reset_counts();
    let edits = BTreeMap::from([
        (vs[0].key().to_vec(), None),
        (
            version(T0 + 3_600 * NS).key().to_vec(),
            Some(version(T0 + 3_600 * NS)),
        ),
    ]);
    prolly::update(&mut store, &crypto, &top, edits).unwrap();
    assert!(store.puts <= 2 * stats.depth as u64);
    assert!(store.put_bytes < 64 * 1024, "{} bytes", store.put_bytes);
    assert!(Version::new(-1, attrs(), vec![], "b".into(), None, 0).is_err());
}

#[test]
fn a_version_record_is_written_as_the_spec_says() {
    let mut store = MemStore::new();
    let v = Version::new(T0, attrs(), vec![], raw_cid(b"dir"), None, 4242).unwrap();
    let top = prolly::build(&mut store, &TreeCrypto::Plain, vec![v.clone()]).unwrap();
    let text = String::from_utf8(store.get(&top).unwrap()).unwrap();
    assert_eq!(
        text,
        format!(
            "{{\"schema\":\"pxfs/history/3\",\"nodes\":[\"{}\"],\"data\":[],\"body\":{{\"type\":\"leaf\",\"entries\":[{{\"t\":1795564800000000000,\"self\":{{\"mode\":493,\"uid\":1000,\"gid\":1000,\"mtime_ns\":1700000000000000000,\"ctime_ns\":1700000000000000000}},\"dir\":0,\"usage\":4242}}]}}}}",
            v.dir
        )
    );
    let page = page::decode::<Version>(text.as_bytes(), &TreeCrypto::Plain).unwrap();
    assert_eq!(page, page::Page::Leaf(vec![v]));
}

fn vectors() -> serde_json::Value {
    let text = include_str!("../../../tests/fixtures/format/vectors.json");
    serde_json::from_str::<serde_json::Value>(text).unwrap()["format3"].clone()
}

/// FORMAT.md §11: the root, history, name and retention vectors that
/// `tests/fixtures/format/vectors.py` computes independently (Python's `datetime` for the
/// calendar).
#[test]
fn roots_histories_names_and_retention_match_the_vectors() {
    use crate::format::root::{Root, RootV3};
    let v = vectors();
    let mut store = MemStore::new();
    let root = RootV3 {
        root: Root {
            attrs: attrs(),
            xattrs: vec![],
            dir: raw_cid(b"dir"),
            inodes: None,
        },
        t: T0 + 20 * H,
        history: Some(raw_cid(b"history")),
    };
    let bytes = root.encode(&TreeCrypto::Plain).unwrap();
    assert_eq!(bytes, v["root_object"].as_str().unwrap().as_bytes());
    let read = RootV3::decode(&bytes, &TreeCrypto::Plain).unwrap();
    assert_eq!((read.root, read.read_only), (root.clone(), false));
    // A format-2 reader refuses it by its schema, naming it.
    let e = Root::decode(&bytes, &TreeCrypto::Plain)
        .unwrap_err()
        .to_string();
    assert!(e.contains("pxfs/root/3"), "{e}");

    let h = Version::new(T0, attrs(), vec![], raw_cid(b"dir"), None, 4242).unwrap();
    let top = prolly::build(&mut store, &TreeCrypto::Plain, vec![h]).unwrap();
    assert_eq!(
        store.get(&top).unwrap(),
        v["history_object"].as_str().unwrap().as_bytes()
    );

    for n in v["snapshot_names"].as_array().unwrap() {
        let t = n["t"].as_i64().unwrap();
        assert_eq!(snapshot_name(t), n["name"].as_str().unwrap());
        assert_eq!(
            parse_snapshot_name(n["name"].as_str().unwrap()),
            Some(t / NS)
        );
    }

    let r = &v["retention"];
    let p = &r["policy"];
    let policy = Policy {
        keep_all_secs: p["keep_all_secs"].as_u64().unwrap(),
        hourly: p["hourly"].as_u64().unwrap() as u32,
        daily: p["daily"].as_u64().unwrap() as u32,
        monthly: p["monthly"].as_u64().unwrap() as u32,
    };
    let (first, step) = (r["first"].as_i64().unwrap(), r["step_ns"].as_i64().unwrap());
    let commits: Vec<i64> = (0..r["commits"].as_i64().unwrap())
        .map(|i| first + i * step)
        .collect();
    let now = r["now"].as_i64().unwrap();
    let kept: Vec<i64> = r["kept"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    assert_eq!(retain(&commits, now, &policy, now), kept);
}

#[test]
fn a_root_v3_refuses_a_missing_time_and_a_history_that_is_its_directory() {
    use crate::format::root::RootV3;
    let dir = raw_cid(b"dir");
    let body = |extra: &str| {
        format!(
            "{{\"schema\":\"pxfs/root/3\",\"nodes\":[\"{dir}\"],\"data\":[],\"body\":{{\"type\":\"root\"{extra},\"self\":{{\"mode\":493,\"uid\":0,\"gid\":0,\"mtime_ns\":0,\"ctime_ns\":0}},\"dir\":0}}}}"
        )
    };
    assert!(RootV3::decode(body(",\"t\":5").as_bytes(), &TreeCrypto::Plain).is_ok());
    assert!(RootV3::decode(body("").as_bytes(), &TreeCrypto::Plain).is_err());
    assert!(RootV3::decode(body(",\"t\":-5").as_bytes(), &TreeCrypto::Plain).is_err());
    let twice = body(",\"t\":5").replace("\"dir\":0}", "\"dir\":0,\"history\":0}");
    assert!(RootV3::decode(twice.as_bytes(), &TreeCrypto::Plain).is_err());
    // Sealed like any node: opens only with the tree's key.
    let crypto = TreeCrypto::sealed(&DataKey::from_bytes([5; 32]));
    let sealed = RootV3::decode(body(",\"t\":5").as_bytes(), &TreeCrypto::Plain)
        .unwrap()
        .root
        .encode(&crypto)
        .unwrap();
    assert!(RootV3::decode(&sealed, &crypto).is_ok());
    assert!(RootV3::decode(&sealed, &TreeCrypto::sealed(&DataKey::from_bytes([6; 32]))).is_err());
}
