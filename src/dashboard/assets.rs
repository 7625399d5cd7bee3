//! The dashboard's script and stylesheet, compiled into the binary so that
//! it works on a host with no internet and needs no front-end toolchain.

use rocket::get;
use rocket::http::{ContentType, Header};

const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

/// A static asset; a day of caching (they change only with the binary).
#[derive(rocket::Responder)]
pub struct Asset {
    body: (ContentType, &'static str),
    cache: Header<'static>,
}

fn asset(kind: ContentType, body: &'static str) -> Asset {
    Asset {
        body: (kind, body),
        cache: Header::new("Cache-Control", "private, max-age=86400"),
    }
}

#[get("/ui/assets/app.js")]
pub fn script() -> Asset {
    asset(ContentType::JavaScript, SCRIPT)
}

#[get("/ui/assets/app.css")]
pub fn style() -> Asset {
    asset(ContentType::CSS, STYLE)
}
