//! The OpenAPI document served at `GET /openapi.json` against the service
//! router it describes (`src/service_api/routes.rs`), served in-process over
//! a memory store.
//!
//! [`ROUTES`] is the router's table written out. It is kept honest from both
//! sides: every entry must be routed by the real router (not 404 or 405) and
//! demand exactly the access listed, every other method on those paths must
//! be 405, and the document must describe exactly these operations with the
//! same access. Every `$ref` in the document must resolve.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::Router;
use dps_attestation::sas::{create_token, unix_now, ExpiryPolicy, SymmetricKey};
use dps_model::{AccessRight, SharedAccessPolicy, Tenant};
use dps_service::pipeline::TenantCache;
use dps_service::service_api::{router, ServiceApi, ServiceAuth};
use dps_storage::{MemoryStore, Store};
use http::{header, Method, Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt;

#[path = "openapi/routes.rs"]
mod routes;

use routes::Access::{Operator, Public, Right};
use routes::{Access, ROUTES};

/// Methods probed for 405 on every routed path.
const PROBED_METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

/// HTTP methods an OpenAPI path item may hold.
const OPENAPI_METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

const TENANT_HOST: &str = "acme.example.test";
/// The name operator tokens are signed for.
const OPERATOR_HOST: &str = "dps.example.test";

/// The service router over a memory store holding one tenant whose
/// policies are, for every right R, `only-R` (just R) and `except-R`
/// (every right but R).
struct Fixture {
    router: Router,
    operator: SymmetricKey,
    tenant: Tenant,
}

impl Fixture {
    async fn new() -> Fixture {
        let store = Arc::new(MemoryStore::new());
        let mut tenant = Tenant::new("acme", TENANT_HOST).expect("tenant");
        for right in AccessRight::ALL {
            tenant
                .access_policies
                .push(policy(&format!("only-{right:?}"), vec![right]));
            let others = AccessRight::ALL
                .into_iter()
                .filter(|r| *r != right)
                .collect();
            tenant
                .access_policies
                .push(policy(&format!("except-{right:?}"), others));
        }
        let tenant = store.create_tenant(tenant).await.expect("create tenant");
        let operator = SymmetricKey::from_bytes(vec![7; 32]);
        let api = ServiceApi::new(
            store,
            Arc::new(TenantCache::default()),
            ServiceAuth {
                operator_key: operator.clone(),
                operator_audience: vec![OPERATOR_HOST.to_owned()],
                expiry: ExpiryPolicy::default(),
            },
            "localhost".to_owned(),
        );
        Fixture {
            router: router(api),
            operator,
            tenant,
        }
    }

    /// A token of the tenant's policy `name`.
    fn tenant_token(&self, name: &str) -> String {
        let policy = self
            .tenant
            .access_policies
            .iter()
            .find(|p| p.key_name == name)
            .unwrap_or_else(|| panic!("no policy {name}"));
        let key = SymmetricKey::from_base64(&policy.primary_key).expect("base64 key");
        create_token(TENANT_HOST, &key, unix_now() + 3600, Some(name))
    }

    fn operator_token(&self) -> String {
        create_token(
            OPERATOR_HOST,
            &self.operator,
            unix_now() + 3600,
            Some("operator"),
        )
    }

    /// Send one request without a body; the status and the body.
    async fn send(&self, method: &str, path: &str, token: Option<&str>) -> (StatusCode, Vec<u8>) {
        let mut request = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).expect("method"))
            .uri(format!("{path}?api-version=2021-10-01"));
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, token);
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, body.to_vec())
    }

    /// The document as served.
    async fn document(&self) -> Value {
        let (status, body) = self.send("GET", "/openapi.json", None).await;
        assert_eq!(status, StatusCode::OK);
        serde_json::from_slice(&body).expect("the served OpenAPI document is JSON")
    }
}

fn policy(name: &str, rights: Vec<AccessRight>) -> SharedAccessPolicy {
    SharedAccessPolicy {
        key_name: name.to_owned(),
        primary_key: SymmetricKey::from_bytes(name.repeat(4).into_bytes()).to_base64(),
        secondary_key: SymmetricKey::from_bytes(vec![1; 32]).to_base64(),
        rights,
    }
}

/// A path template with every `{param}` replaced by a sample id.
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|s| if s.starts_with('{') { "sample-1" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// Does a concrete path match a template (literal segments case-insensitive)?
fn matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t.starts_with('{') || t.eq_ignore_ascii_case(p))
}

/// The `{param}` names of a path template.
fn template_params(template: &str) -> BTreeSet<String> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .map(str::to_owned)
        .collect()
}

/// Every operation of the document: (METHOD, path) → operation object.
fn operations(doc: &Value) -> BTreeMap<(String, String), &Value> {
    let paths = doc["paths"].as_object().expect("paths is an object");
    let mut out = BTreeMap::new();
    for (path, item) in paths {
        for method in OPENAPI_METHODS {
            if let Some(op) = item.get(method) {
                out.insert((method.to_ascii_uppercase(), path.clone()), op);
            }
        }
    }
    out
}

/// Follow a local `$ref` (`#/components/…`).
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.strip_prefix('#').expect("local $ref"))
            .unwrap_or_else(|| panic!("unresolved $ref {r}")),
        None => value,
    }
}

fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                if key == "$ref" {
                    out.insert(v.as_str().expect("$ref is a string").to_owned());
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_served_document_is_openapi_3() {
    let fixture = Fixture::new().await;
    let request = Request::get("/openapi.json")
        .body(Body::empty())
        .expect("request");
    let response = fixture.router.clone().oneshot(request).await.expect("send");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()
        .expect("ascii");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );

    let doc = fixture.document().await;
    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3."), "openapi {version}");
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    assert!(!doc["paths"].as_object().expect("paths").is_empty());
    assert!(doc["components"]["securitySchemes"]["sharedAccessSignature"].is_object());
    assert!(doc["components"]["securitySchemes"]["operator"].is_object());
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_with_their_access() {
    let doc = Fixture::new().await.document().await;
    let documented = operations(&doc);
    let table: BTreeMap<(String, String), Access> = ROUTES
        .iter()
        .map(|&(m, p, a)| ((m.to_owned(), p.to_owned()), a))
        .collect();
    assert_eq!(table.len(), ROUTES.len(), "ROUTES names a route twice");

    let missing: Vec<_> = table
        .keys()
        .filter(|k| !documented.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "routes not in the document: {missing:?}"
    );
    let extra: Vec<_> = documented
        .keys()
        .filter(|k| !table.contains_key(*k))
        .collect();
    assert!(extra.is_empty(), "documented but not routed: {extra:?}");

    let global = &doc["security"];
    assert_eq!(
        global,
        &serde_json::json!([{ "sharedAccessSignature": [] }])
    );
    let rights: Vec<&str> = doc["components"]["schemas"]["AccessRight"]["enum"]
        .as_array()
        .expect("AccessRight enum")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for (key, op) in &documented {
        let access = table[key];
        let security = op.get("security");
        let right = op.get("x-dps-right").and_then(Value::as_str);
        match access {
            Public => assert_eq!(security, Some(&serde_json::json!([])), "{key:?}"),
            Operator => assert_eq!(
                security,
                Some(&serde_json::json!([{ "operator": [] }])),
                "{key:?}"
            ),
            Right(expected) => {
                assert_eq!(security, None, "{key:?} should use the global scheme");
                assert_eq!(right, Some(expected), "{key:?}");
                assert!(
                    rights.contains(&expected),
                    "{expected} is not an AccessRight"
                );
            }
        }
        if access != Public {
            assert!(
                op["responses"].get("401").is_some(),
                "{key:?} documents no 401"
            );
        }
    }
}

#[tokio::test]
async fn the_router_serves_the_table_and_nothing_else_on_its_paths() {
    let fixture = Fixture::new().await;
    let templates: BTreeSet<&str> = ROUTES.iter().map(|&(_, p, _)| p).collect();
    for template in templates {
        let path = concrete(template);
        for method in PROBED_METHODS {
            let routed = ROUTES
                .iter()
                .find(|&&(m, t, _)| m == method && matches(t, &path));
            let (status, body) = fixture.send(method, &path, None).await;
            let expected = match routed {
                Some((_, _, Public)) => StatusCode::OK,
                // Routed, then refused for want of a token.
                Some(_) => StatusCode::UNAUTHORIZED,
                None => StatusCode::METHOD_NOT_ALLOWED,
            };
            assert_eq!(
                status,
                expected,
                "{method} {path}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    // And the router is not wider than the table one segment further down.
    let (status, _) = fixture.send("GET", "/enrollments/a/b/c", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_router_demands_the_access_in_the_table() {
    let fixture = Fixture::new().await;
    let operator = fixture.operator_token();
    let owner = fixture.tenant_token("provisioningserviceowner");
    for &(method, template, access) in ROUTES {
        let path = concrete(template);
        let (allowed, refused) = match access {
            Public => continue,
            Right(right) => (
                fixture.tenant_token(&format!("only-{right}")),
                vec![
                    fixture.tenant_token(&format!("except-{right}")),
                    operator.clone(),
                ],
            ),
            Operator => (operator.clone(), vec![owner.clone()]),
        };
        let (status, body) = fixture.send(method, &path, Some(&allowed)).await;
        // Past authorization; the handler may still refuse the empty
        // request (400) or the sample id (404).
        assert_ne!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with the right credential: {}",
            String::from_utf8_lossy(&body)
        );
        for token in refused {
            let (status, body) = fixture.send(method, &path, Some(&token)).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} without the right: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
}

#[test]
fn every_ref_resolves_and_every_component_is_used() {
    let doc: Value = serde_json::from_str(include_str!("../src/service_api/openapi.json"))
        .expect("openapi.json is JSON");
    let mut refs = BTreeSet::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        let pointer = r
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("non-local $ref {r}"));
        assert!(
            pointer.starts_with("/components/"),
            "$ref outside components: {r}"
        );
        assert!(doc.pointer(pointer).is_some(), "unresolved $ref {r}");
    }
    let components = doc["components"].as_object().expect("components");
    for (kind, entries) in components {
        if kind == "securitySchemes" {
            continue;
        }
        for name in entries.as_object().expect("component map").keys() {
            let r = format!("#/components/{kind}/{name}");
            assert!(refs.contains(&r), "unused component {r}");
        }
    }
}

#[test]
fn operations_are_well_formed() {
    let doc: Value = serde_json::from_str(include_str!("../src/service_api/openapi.json"))
        .expect("openapi.json is JSON");
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("securitySchemes");
    let mut operation_ids = BTreeSet::new();
    for ((method, path), op) in operations(&doc) {
        let id = op["operationId"].as_str().expect("operationId");
        assert!(
            operation_ids.insert(id.to_owned()),
            "operationId {id} twice"
        );
        let responses = op["responses"].as_object().expect("responses");
        assert!(
            responses.keys().any(|code| code.starts_with('2')),
            "{method} {path}: no success response"
        );
        for response in responses.values() {
            assert!(resolve(&doc, response)["description"].is_string());
        }
        for requirement in op
            .get("security")
            .or(doc.get("security"))
            .and_then(Value::as_array)
            .expect("security")
        {
            for scheme in requirement.as_object().expect("requirement").keys() {
                assert!(schemes.contains_key(scheme), "unknown scheme {scheme}");
            }
        }
        // Path parameters: declared (on the path item or the operation),
        // required, and exactly the template's.
        let declared: BTreeSet<String> = doc["paths"][&path]
            .get("parameters")
            .into_iter()
            .chain(op.get("parameters"))
            .flat_map(|list| list.as_array().expect("parameter list"))
            .map(|p| resolve(&doc, p))
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{path}: optional path parameter");
                p["name"].as_str().expect("parameter name").to_owned()
            })
            .collect();
        assert_eq!(declared, template_params(&path), "{method} {path}");
    }
}
