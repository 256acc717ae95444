//! The controller's HTTP clients, each built on first use and then reused (one
//! connection pool, keep-alive across health rounds): one for `http://` URLs, built
//! without any TLS roots, and one for `https://` URLs with the system's roots. Building
//! a client with the system's roots reads and parses every CA certificate on the host
//! (~15 ms and a few hundred KiB each time): a controller whose checks, notifications
//! and API are plain HTTP on loopback never does.

use std::sync::{Arc, OnceLock};

/// A client for HTTP on loopback only (the API, the CLI's calls to it): no TLS roots.
pub fn plain() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tls_certs_only(std::iter::empty())
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// Lazily built HTTP clients, shared by clones: the controller's (notifications) and the
/// probe thread's own (see [`crate::health::probes`]). Redirects are not followed: a probe judges
/// the answer it gets.
#[derive(Debug, Clone, Default)]
pub struct Http {
    plain: Arc<OnceLock<reqwest::Client>>,
    tls: Arc<OnceLock<reqwest::Client>>,
}

impl Http {
    /// Clients to be built when first needed.
    pub fn new() -> Http {
        Http::default()
    }

    /// The client for `url`: with the system's TLS roots for `https://` (loaded the first
    /// time), else the one without.
    pub fn for_url(&self, url: &str) -> &reqwest::Client {
        let is_https = url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        if is_https {
            self.tls.get_or_init(|| {
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .unwrap_or_else(|_| reqwest::Client::new())
            })
        } else {
            self.plain.get_or_init(plain)
        }
    }

    /// Whether the client with TLS roots was built (for tests of what a pass costs).
    pub fn tls_built(&self) -> bool {
        self.tls.get().is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_urls_get_the_client_with_roots_built_once_and_others_never_build_it() {
        let http = Http::new();
        let a = http.for_url("http://127.0.0.1:1/api/health") as *const _;
        let b = http.for_url("HTTP://localhost/x") as *const _;
        assert_eq!(a, b, "one plain client, reused");
        assert!(!http.tls_built());
        let clone = http.clone();
        let t = clone.for_url("https://example.invalid/") as *const _;
        assert!(http.tls_built(), "clones share the clients");
        assert_ne!(a, t);
        assert_eq!(t, http.for_url("HTTPS://example.invalid/x") as *const _);
    }
}
