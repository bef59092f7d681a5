//! The status page at `/ui`: its assets as served, and the page itself in headless
//! Chromium against a real node (skipped with a message when Chromium is not installed;
//! `.ci/checks/ui.sh` installs it and makes its absence a failure).

mod chromium;
mod common;

use std::path::PathBuf;
use std::time::Duration;

use chromium::Browser;
use common::{client, start, start_with, url};
use directory::Server;
use directory_api::{Address, Client, InstanceId, Meta, Registration, ServiceName, Tags};

/// Longer than a live update takes, shorter than the page's full re-read (15 s): a change
/// that shows up within it came through the watch stream.
const LIVE_LIMIT: Duration = Duration::from_secs(5);

/// Where the screenshots are saved: `target/ui-screenshots/`.
fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-screenshots")
}

async fn register(
    client: &Client,
    service: &str,
    instance: &str,
    tags: &[&str],
    meta: &[(&str, &str)],
) {
    let mut registration = Registration::new(Address::new("127.0.0.1:7000").unwrap());
    registration.tags = Tags::new(tags.iter().map(|t| (*t).to_owned()).collect()).unwrap();
    let pairs = meta.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    registration.meta = Meta::new(pairs.collect()).unwrap();
    let (service, instance) = (
        ServiceName::new(service).unwrap(),
        InstanceId::new(instance).unwrap(),
    );
    client
        .register(&service, &instance, &registration)
        .await
        .unwrap();
}

/// The browser, or `None` (with a printed reason) when Chromium is absent and not required.
async fn browser() -> Option<Browser> {
    match chromium::find() {
        Some(binary) => Some(Browser::start(&binary).await),
        None if std::env::var_os(chromium::REQUIRE_ENV).is_some() => {
            panic!(
                "Chromium is required ({} is set) but not installed",
                chromium::REQUIRE_ENV
            )
        }
        None => {
            println!(
                "SKIPPED: no chromium on the PATH (apt-get install chromium, or run .ci/checks/ui.sh)"
            );
            None
        }
    }
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let server = start().await;
    for (path, content_type, needle) in [
        ("/ui", "text/html", "/ui/app.js"),
        ("/ui/app.js", "text/javascript", "/v1/watch"),
        ("/ui/style.css", "text/css", "@media"),
    ] {
        let response = client().get(url(&server, path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("'self'")
        );
        assert!(response.text().await.unwrap().contains(needle), "{path}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn the_page_is_public_but_its_data_follows_the_acl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl.json");
    directory::acl::AclFile::default().save(&path).unwrap();
    let server = start_with(|c| c.acl_file = Some(path)).await;
    let page = client().get(url(&server, "/ui")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the page itself needs no token");
    let data = client()
        .get(url(&server, "/v1/services"))
        .send()
        .await
        .unwrap();
    assert_eq!(data.status(), 401, "what it shows does");
    server.shutdown().await;
}

#[tokio::test]
async fn the_status_page_shows_registrations_and_updates_live_in_chromium() {
    let Some(mut browser) = browser().await else {
        return;
    };
    let server = start().await;
    let api = Client::new(&server.http_addr().to_string()).unwrap();
    register(&api, "orders", "orders-1", &["v2"], &[("zone", "a")]).await;
    register(&api, "billing", "billing-1", &["blue"], &[]).await;

    browser.viewport(1280, 800, false).await;
    browser.navigate(&url(&server, "/ui")).await;
    let loaded = "document.querySelector('[data-instance=\"orders/orders-1\"]') !== null \
                  && document.getElementById('status').textContent === 'live'";
    assert!(
        browser.wait_for(loaded, Duration::from_secs(15)).await,
        "the page loaded"
    );

    let services = browser
        .eval("[...document.querySelectorAll('#services tbody tr')].map(r => r.innerText.split(/\\s+/).join(' '))")
        .await;
    assert_eq!(services, serde_json::json!(["billing 1", "orders 1"]));
    let row = browser
        .eval("[...document.querySelector('[data-instance=\"orders/orders-1\"]').cells].map(c => c.innerText)")
        .await;
    let row: Vec<String> = serde_json::from_value(row).unwrap();
    assert_eq!(row[0..4], ["orders-1", "127.0.0.1:7000", "v2", "zone=a"]);
    let lease = &row[4];
    assert!(
        lease.ends_with('s') && lease.trim_end_matches('s').parse::<u32>().unwrap() <= 30,
        "{lease}"
    );
    let member = browser
        .eval("document.querySelector('#members tbody').innerText")
        .await;
    assert!(member.as_str().unwrap().contains("alive"), "{member}");

    register(&api, "orders", "orders-2", &[], &[("zone", "b")]).await;
    let gone = (
        ServiceName::new("billing").unwrap(),
        InstanceId::new("billing-1").unwrap(),
    );
    api.deregister(&gone.0, &gone.1).await.unwrap();
    let updated = "document.querySelector('[data-instance=\"orders/orders-2\"]') !== null \
                   && document.querySelector('[data-instance=\"billing/billing-1\"]') === null \
                   && document.querySelector('#feed').innerText.includes('deregistered billing/billing-1')";
    assert!(
        browser.wait_for(updated, LIVE_LIMIT).await,
        "the page updated live"
    );
    browser
        .screenshot(&screenshot_dir().join("status-page-laptop.png"))
        .await;

    browser.viewport(390, 844, true).await;
    let fits = "document.documentElement.scrollWidth <= window.innerWidth";
    assert!(
        browser.wait_for(fits, Duration::from_secs(2)).await,
        "no sideways scrolling on a phone"
    );
    browser
        .screenshot(&screenshot_dir().join("status-page-phone.png"))
        .await;
    browser.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn the_status_page_shows_only_what_the_entered_token_may_read() {
    let Some(mut browser) = browser().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acl.json");
    let mut file = directory::acl::AclFile::default();
    let (_, reader) = file.create_token("orders-reader", vec!["read:orders".parse().unwrap()]);
    let (_, admin) = file.create_token("admin", vec!["write:*".parse().unwrap()]);
    file.save(&path).unwrap();
    let server: Server = start_with(|c| c.acl_file = Some(path)).await;
    let api = Client::builder([server.http_addr().to_string()])
        .bearer_token(admin)
        .build()
        .unwrap();
    register(&api, "orders", "orders-1", &[], &[]).await;
    register(&api, "billing", "billing-1", &[], &[]).await;

    browser.navigate(&url(&server, "/ui")).await;
    let refused = "document.getElementById('error').innerText.includes('unauthorized')";
    assert!(
        browser.wait_for(refused, Duration::from_secs(15)).await,
        "no token: refused"
    );
    let submit = format!(
        "document.getElementById('token').value = '{reader}'; \
         document.getElementById('token-form').requestSubmit(); true"
    );
    browser.eval(&submit).await;
    let shown = "document.querySelector('[data-instance=\"orders/orders-1\"]') !== null \
                 && document.getElementById('status').textContent === 'live'";
    assert!(
        browser.wait_for(shown, Duration::from_secs(15)).await,
        "the token's services shown"
    );
    let billing = browser
        .eval("document.body.innerText.includes('billing')")
        .await;
    assert_eq!(
        billing, false,
        "a service the token may not read stays hidden"
    );
    register(&api, "billing", "billing-2", &[], &[]).await;
    register(&api, "orders", "orders-2", &[], &[]).await;
    let live = "document.querySelector('[data-instance=\"orders/orders-2\"]') !== null";
    assert!(
        browser.wait_for(live, LIVE_LIMIT).await,
        "live updates with the token"
    );
    let billing = browser
        .eval("document.body.innerText.includes('billing')")
        .await;
    assert_eq!(billing, false, "the watch stream is filtered too");
    browser.close().await;
    server.shutdown().await;
}
