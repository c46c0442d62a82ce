//! The console's static files, embedded in the binary (the console works offline: no CDN).
//! Vendored libraries (`assets/console/vendor`, with their licences): htmx 2.0.11 (0BSD) for
//! partial page updates and Apache ECharts 6.1.0 (Apache-2.0) for charts; the style sheet and
//! the small script that starts the charts are ours.
//!
//! Each file is served under a path carrying the binary's version, so browsers may keep it for
//! a year and a new version is fetched after an upgrade.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// (name, content type, bytes).
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/console.js"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/vendor/htmx.min.js"),
    ),
    (
        "echarts.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console/vendor/echarts.min.js"),
    ),
];

/// The versioned path of an embedded file.
pub fn url(name: &str) -> String {
    format!("/console/assets/{}/{name}", env!("CARGO_PKG_VERSION"))
}

/// Bytes the embedded files add to the binary.
pub fn embedded_bytes() -> usize {
    FILES.iter().map(|(_, _, bytes)| bytes.len()).sum()
}

/// `GET /console/assets/{version}/{name}`.
pub async fn serve(Path((version, name)): Path<(String, String)>) -> Response {
    let Some((_, content_type, bytes)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // An old version's path still answers (a page cached across an upgrade), but briefly.
    let cache = if version == env!("CARGO_PKG_VERSION") {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=60"
    };
    (
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, cache),
        ],
        *bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_embedded_file_names_another_host_to_load_from() {
        // Scripts and styles may mention URLs in comments or licences, but nothing of ours
        // loads from one: no `src=`/`href=`/`url(` pointing at http(s).
        for (name, _, bytes) in FILES.iter().filter(|(n, _, _)| n.starts_with("console.")) {
            let text = String::from_utf8_lossy(bytes);
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "{name}"
            );
        }
        assert!(embedded_bytes() > 1_000_000);
    }
}
