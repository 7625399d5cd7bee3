//! `GET /healthz`: unauthenticated liveness for load balancers and systemd.

use rocket::fairing::AdHoc;
use rocket::serde::json::{json, Value};
use rocket::{get, routes, State};

use super::App;

pub fn stage() -> AdHoc {
    AdHoc::on_ignite("health routes", |rocket| async {
        rocket.mount("/", routes![healthz])
    })
}

#[get("/healthz")]
fn healthz(app: &State<App>) -> Value {
    json!({
        "status": if app.engine.is_accepting() { "ok" } else { "shutting_down" },
        "projects": app.engine.catalog().len(),
    })
}
