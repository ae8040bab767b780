//! The CA routes in-process with every log line captured: no answer and no
//! log line carries a CA private key, in PEM or as its base64 body.

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use dps_attestation::sas::{create_token, unix_now, ExpiryPolicy, SymmetricKey};
use dps_model::Tenant;
use dps_storage::{MemoryStore, Store};
use http::{header, Method, Request, StatusCode};
use tower::ServiceExt;

use crate::certificate_authority::{CaMaterial, KeyEncryptionKey};
use crate::pipeline::TenantCache;
use crate::service_api::{router, ServiceApi, ServiceAuth};

const HOST: &str = "acme.example";

/// Log output, shared with the writer the subscriber writes through.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let mut buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        let buffer = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buffer).into_owned()
    }
}

async fn api(with_key: bool) -> (Router, String) {
    let store = Arc::new(MemoryStore::new());
    let tenant = store
        .create_tenant(Tenant::new("acme", HOST).expect("tenant"))
        .await
        .expect("create tenant");
    let owner = tenant
        .access_policy("provisioningserviceowner")
        .expect("owner policy");
    let key = SymmetricKey::from_base64(&owner.primary_key).expect("key");
    let token = create_token(HOST, &key, unix_now() + 3600, Some(&owner.key_name));
    let mut api = ServiceApi::new(
        store,
        Arc::new(TenantCache::default()),
        ServiceAuth {
            operator_key: SymmetricKey::from_bytes(vec![7; 32]),
            operator_audience: vec!["operator.example".to_owned()],
            expiry: ExpiryPolicy::default(),
        },
        "example".to_owned(),
    );
    if with_key {
        api = api.with_certificate_key(Arc::new(KeyEncryptionKey::generate().unwrap().0));
    }
    (router(api), token)
}

async fn send(
    router: &Router,
    token: &str,
    method: Method,
    path: &str,
    body: &str,
) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(format!("{path}?api-version=2025-07-01-preview"))
        .header(header::AUTHORIZATION, token)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let response = router.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn secret_forms(key_pem: &str) -> Vec<String> {
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = STANDARD.decode(&body).expect("base64 body");
    // The whole body, and a piece of its secret part (after the PKCS#8
    // header every key of a type shares), to catch a partial leak too.
    vec![body.clone(), STANDARD.encode(der), body[40..72].to_owned()]
}

#[tokio::test]
async fn no_answer_and_no_log_line_carries_a_ca_key() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let ca = CaMaterial::generate("Imported CA").unwrap();
    let stranger = CaMaterial::generate("Someone else").unwrap();
    let mut secrets = secret_forms(ca.private_key_pem());
    secrets.extend(secret_forms(stranger.private_key_pem()));
    let import = |key: &str| {
        serde_json::json!({"mode": "import", "certificateChain": ca.certificate_chain(), "privateKey": key})
            .to_string()
    };

    let (router, token) = api(true).await;
    let mut answers = Vec::new();
    let mut call = |answer: (StatusCode, String), expected: StatusCode| {
        assert_eq!(answer.0, expected, "{}", answer.1);
        answers.push(answer.1);
    };
    call(
        send(
            &router,
            &token,
            Method::PUT,
            "/certificateAuthorities/ca1",
            &import(ca.private_key_pem()),
        )
        .await,
        StatusCode::OK,
    );
    call(
        send(
            &router,
            &token,
            Method::PUT,
            "/certificateAuthorities/ca2",
            &import(stranger.private_key_pem()),
        )
        .await,
        StatusCode::BAD_REQUEST,
    );
    call(
        send(
            &router,
            &token,
            Method::PUT,
            "/certificateAuthorities/ca3",
            "{\"mode\":\"generate\"}",
        )
        .await,
        StatusCode::OK,
    );
    let root = CaMaterial::generate("Offline root").unwrap();
    secrets.extend(secret_forms(root.private_key_pem()));
    let intermediate = serde_json::json!({"mode": "intermediate",
        "rootCertificateChain": root.certificate_chain(), "rootPrivateKey": root.private_key_pem()});
    call(
        send(
            &router,
            &token,
            Method::PUT,
            "/certificateAuthorities/ca4",
            &intermediate.to_string(),
        )
        .await,
        StatusCode::OK,
    );
    call(
        send(&router, &token, Method::GET, "/certificateAuthorities", "").await,
        StatusCode::OK,
    );
    call(
        send(
            &router,
            &token,
            Method::GET,
            "/certificateAuthorities/ca1",
            "",
        )
        .await,
        StatusCode::OK,
    );
    // Without a key-encryption key the import fails inside dps: logged.
    let (keyless, keyless_token) = api(false).await;
    call(
        send(
            &keyless,
            &keyless_token,
            Method::PUT,
            "/certificateAuthorities/ca1",
            &import(ca.private_key_pem()),
        )
        .await,
        StatusCode::INTERNAL_SERVER_ERROR,
    );

    let logged = logs.text();
    assert!(
        logged.contains("internal error"),
        "the capture works: {logged}"
    );
    for text in answers.iter().chain(std::iter::once(&logged)) {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "a CA key leaked: {text}");
        }
    }
}
