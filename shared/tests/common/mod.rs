//! Set-up the in-process test suites share: the administrator every request authenticates as,
//! the registries the tests push into, and the test registry itself.
#![allow(clippy::unwrap_used, missing_docs)]

pub mod registry;
pub mod snapshot;
/// The moto server and SDK configuration the library's own adapter tests use.
#[allow(dead_code)]
#[path = "../../src/testing.rs"]
pub mod testing;

use berth::app::App;

/// The administrator's access key.
pub const ADMIN_KEY: &str = "BKTESTADMIN000000001";
/// The administrator's secret key.
pub const ADMIN_SECRET: &str = "test-admin-secret-not-for-production";
/// Registries the tests push into.
pub const REGISTRIES: [&str; 12] = ["a", "team", "app", "dst", "multi", "other", "src", "r1", "r2", "r3", "e2e", "gc"];

/// Creates the admin key and the test registries, once per store.
pub async fn prepare(app: &App, done: &tokio::sync::OnceCell<()>) {
    done.get_or_init(|| async {
        berth::identity::bootstrap::ensure_admin(app.meta.as_ref(), Some((ADMIN_KEY, ADMIN_SECRET)), 0).await.unwrap();
        for name in REGISTRIES {
            berth::identity::registry::create(app.meta.as_ref(), name, true, vec![], "test", 0).await.unwrap();
        }
    })
    .await;
}
