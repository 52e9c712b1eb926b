//! The console's static files, compiled into the binary: its stylesheet and script, and
//! htmx with its SSE extension (`collector/assets/vendor/`, as published on npm). Served
//! only to authenticated viewers, with a version in their URLs so a new collector's files
//! are fetched anew.

use axum::{
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};

/// The collector's version, in asset URLs.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// (name, content type, bytes) of every file.
const FILES: [(&str, &str, &[u8]); 4] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/console.js"),
    ),
    (
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/htmx.min.js"),
    ),
    (
        "sse.min.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/vendor/sse.min.js"),
    ),
];

/// The stylesheet, for the login page (which inlines it: nothing is served before login).
pub fn stylesheet() -> &'static str {
    std::str::from_utf8(FILES[0].2).expect("console.css is UTF-8")
}

/// The file `name`.
pub fn serve(name: &str) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, kind, bytes)) => (
            [
                (header::CONTENT_TYPE, *kind),
                (header::CACHE_CONTROL, "private, max-age=86400"),
            ],
            *bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, format!("no asset {name:?}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendored_files_are_the_published_ones() {
        let table = include_str!("../../assets/vendor/README.md");
        for (name, _, bytes) in FILES.iter().filter(|(n, _, _)| n.ends_with(".min.js")) {
            let row = table
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}`")))
                .unwrap_or_else(|| panic!("{name} is not in assets/vendor/README.md"));
            assert!(
                row.contains(&crate::bundle::sha256_hex(bytes)),
                "{name} differs from the published file recorded in assets/vendor/README.md"
            );
        }
    }

    /// WCAG 2 relative luminance of `#rrggbb`.
    fn luminance(hex: &str) -> f64 {
        let channel = |i: usize| {
            let c = u8::from_str_radix(&hex[i..i + 2], 16).unwrap() as f64 / 255.0;
            if c <= 0.039_28 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(1) + 0.7152 * channel(3) + 0.0722 * channel(5)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (a, b) = (luminance(a), luminance(b));
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    #[test]
    fn text_colours_meet_wcag_aa_in_both_themes() {
        let css = stylesheet();
        // `--name: light-dark(#light, #dark);`
        let colour = |name: &str| -> (String, String) {
            let line = css
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("--{name}:")))
                .unwrap_or_else(|| panic!("no --{name}"));
            let inner = line
                .split("light-dark(")
                .nth(1)
                .unwrap()
                .split(')')
                .next()
                .unwrap();
            let (l, d) = inner.split_once(',').unwrap();
            (l.trim().to_owned(), d.trim().to_owned())
        };
        let pairs = [
            ("fg", "bg"),
            ("muted", "bg"),
            ("fg", "panel"),
            ("muted", "panel"),
            ("link", "bg"),
            ("critical-fg", "critical-bg"),
            ("warning-fg", "warning-bg"),
            ("info-fg", "info-bg"),
            ("ok-fg", "ok-bg"),
            ("offline-fg", "offline-bg"),
        ];
        for (fg, bg) in pairs {
            let (f, b) = (colour(fg), colour(bg));
            for (theme, f, b) in [("light", &f.0, &b.0), ("dark", &f.1, &b.1)] {
                let ratio = contrast(f, b);
                assert!(
                    ratio >= 4.5,
                    "{theme}: --{fg} {f} on --{bg} {b} is {ratio:.2}:1, below 4.5:1"
                );
            }
        }
    }
}
