use std::sync::Mutex;

use super::*;

/// A backend that answers from memory and records the actions asked of it.
#[derive(Default)]
struct Fake {
    actions: Mutex<Vec<String>>,
}

#[async_trait]
impl Backend for Fake {
    async fn status(&self) -> Result<serde_json::Value, String> {
        Ok(serde_json::json!({
            "wallet": "0xw", "chain_id": 31337, "chain": {"reachable": true, "error": null},
            "mounts": [], "tokens": [{"token_id": 7, "quota": 1073741824, "usage": 5}]
        }))
    }
    async fn history(&self, token: u64) -> Result<Vec<UsagePoint>, String> {
        Ok(vec![UsagePoint {
            at: 1_700_000_000,
            usage: 5,
            quota: 1 << 30,
            seq: token,
        }])
    }
    async fn sync(&self, token: u64) -> Result<String, String> {
        self.actions.lock().unwrap().push(format!("sync {token}"));
        Ok(format!("sync of token {token} requested"))
    }
    async fn unmount(&self, mountpoint: &str) -> Result<String, String> {
        self.actions
            .lock()
            .unwrap()
            .push(format!("unmount {mountpoint}"));
        Err(format!("{mountpoint} is busy"))
    }
}

async fn started() -> (Dashboard, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let d = Dashboard::start("127.0.0.1:0".parse().unwrap(), fake.clone())
        .await
        .unwrap();
    (d, fake)
}

fn base(d: &Dashboard) -> String {
    format!("http://{}", d.addr())
}

fn no_cors(resp: &reqwest::Response) {
    let cors: Vec<_> = resp
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .collect();
    assert!(cors.is_empty(), "CORS headers: {cors:?}");
}

#[tokio::test]
async fn the_printed_url_opens_the_page_with_its_token_in_the_query() {
    let (d, _) = started().await;
    let url = d.url();
    assert!(url.starts_with(&format!("http://127.0.0.1:{}/?token=", d.addr().port())));
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    no_cors(&resp);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");
    let html = resp.text().await.unwrap();
    assert!(html.contains("<title>pxfs</title>"));
    // Built in, nothing fetched from elsewhere.
    assert!(
        !html.contains("https://") && !html.contains("src=\"http"),
        "{html}"
    );
}

#[tokio::test]
async fn anything_without_the_right_token_gets_401_and_no_cors_headers() {
    let (d, fake) = started().await;
    let client = reqwest::Client::new();
    for path in ["/", "/api/status", "/api/history/7", "/nothing-here"] {
        let resp = client
            .get(format!("{}{path}", base(&d)))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        no_cors(&resp);
        let wrong = client
            .get(format!("{}{path}?token={}", base(&d), auth::new_token()))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path} with a wrong token");
    }
    // A POST without the token, even from the page's own origin, changes nothing.
    let resp = client
        .post(format!("{}/api/sync/7", base(&d)))
        .header("origin", base(&d))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // A browser's preflight is no exception.
    let resp = client
        .request(Method::OPTIONS, format!("{}/api/sync/7", base(&d)))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    no_cors(&resp);
    assert!(fake.actions.lock().unwrap().is_empty());
}

#[tokio::test]
async fn with_the_token_the_api_serves_the_status_and_usage_history() {
    let (d, _) = started().await;
    let client = reqwest::Client::new();
    let resp = client
        .get(format!("{}/api/status", base(&d)))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    no_cors(&resp);
    let status: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status["tokens"][0]["token_id"], 7);
    let history: serde_json::Value = client
        .get(format!("{}/api/history/7?token={}", base(&d), d.token))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        history,
        serde_json::json!([{"at": 1_700_000_000u64, "usage": 5, "quota": 1u64 << 30, "seq": 7}])
    );
}

#[tokio::test]
async fn a_post_needs_the_token_and_the_dashboards_own_origin() {
    let (d, fake) = started().await;
    let client = reqwest::Client::new();
    let sync = |origin: Option<String>| {
        let mut req = client
            .post(format!("{}/api/sync/7", base(&d)))
            .bearer_auth(&d.token);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    // Another site's page, a page of another port, and no Origin at all: 403.
    for origin in [
        Some("http://evil.example".to_string()),
        Some(format!("http://127.0.0.1:{}", d.addr().port() ^ 1)),
        Some("null".to_string()),
        None,
    ] {
        let resp = sync(origin.clone()).await.unwrap();
        assert_eq!(resp.status(), 403, "{origin:?}");
        no_cors(&resp);
    }
    assert!(fake.actions.lock().unwrap().is_empty(), "nothing was done");
    // The page itself.
    let resp = sync(Some(base(&d))).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "sync of token 7 requested");
    // A failed action says why.
    let resp = client
        .post(format!("{}/api/unmount", base(&d)))
        .bearer_auth(&d.token)
        .header("origin", base(&d))
        .json(&serde_json::json!({"mountpoint": "/mnt/px"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "/mnt/px is busy");
    assert_eq!(
        *fake.actions.lock().unwrap(),
        ["sync 7".to_string(), "unmount /mnt/px".to_string()]
    );
}

#[tokio::test]
async fn a_request_naming_another_host_is_refused_even_with_the_token() {
    let (d, _) = started().await;
    let resp = reqwest::Client::new()
        .get(format!("{}/api/status", base(&d)))
        .bearer_auth(&d.token)
        .header("host", format!("rebound.example:{}", d.addr().port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn only_loopback_addresses_are_served() {
    for refused in ["0.0.0.0:0", "192.168.1.10:8080", "[::]:0"] {
        let err = Dashboard::start(refused.parse().unwrap(), Arc::new(Fake::default()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{refused} was served"));
        assert!(err.to_string().contains("loopback only"), "{err}");
    }
    assert!(check_listen("[::1]:8080".parse().unwrap()).is_ok());
}
