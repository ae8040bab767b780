//! Paging: continuation tokens through large listings.

use std::sync::Arc;

use dps_model::{OperationKind, Precondition};

use super::fixtures::{enrollment, group, scope_of};
use crate::{ContinuationToken, PageRequest, Store};

/// 10,000 enrollments paged 97 at a time through client-echoed tokens: every
/// record exactly once, in id order.
pub async fn page_through_ten_thousand_enrollments(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    // Mixed case and shuffled insertion order; keys sort by lower case.
    let ids: Vec<String> = (0..10_000)
        .map(|i: u32| {
            let n = i.wrapping_mul(7919) % 10_000;
            if n.is_multiple_of(3) {
                format!("Dev-{n:05}")
            } else {
                format!("dev-{n:05}")
            }
        })
        .collect();
    for chunk in ids.chunks(2_500) {
        let batch = chunk.iter().map(|id| enrollment(id)).collect();
        assert_eq!(
            store.import_enrollments(&scope, batch).await.unwrap(),
            chunk.len()
        );
    }
    let mut expected: Vec<String> = ids.clone();
    expected.sort_by_key(|id| id.to_ascii_lowercase());

    let mut seen = Vec::with_capacity(ids.len());
    let mut request = PageRequest::first(97);
    let mut pages = 0;
    loop {
        let page = store.list_enrollments(&scope, &request).await.unwrap();
        pages += 1;
        assert!(page.items.len() <= 97);
        seen.extend(
            page.items
                .iter()
                .map(|e| e.registration_id.as_str().to_owned()),
        );
        match page.continuation {
            Some(token) => {
                assert_eq!(page.items.len(), 97, "only the last page is short");
                // The client echoes the token text back.
                let echoed = ContinuationToken::parse(token.as_str()).unwrap();
                request = PageRequest::after(echoed, 97);
            }
            None => break,
        }
    }
    assert_eq!(pages, 10_000usize.div_ceil(97));
    assert_eq!(seen.len(), expected.len(), "no record lost or repeated");
    assert_eq!(seen, expected, "id order, spelling kept");

    // A page size beyond the maximum is clamped; a record added behind the
    // cursor is not returned, one ahead of it is.
    let page = store
        .list_enrollments(&scope, &PageRequest::first(usize::MAX))
        .await
        .unwrap();
    assert_eq!(page.items.len(), crate::MAX_PAGE_SIZE);
    let first = store
        .list_enrollments(&scope, &PageRequest::first(10))
        .await
        .unwrap();
    let token = first.continuation.unwrap();
    store
        .put_enrollment(&scope, enrollment("aaa-before"), Precondition::None)
        .await
        .unwrap();
    store
        .put_enrollment(&scope, enrollment("dev-00010-late"), Precondition::None)
        .await
        .unwrap();
    let next = store
        .list_enrollments(&scope, &PageRequest::after(token, 2))
        .await
        .unwrap();
    let next_ids: Vec<&str> = next
        .items
        .iter()
        .map(|e| e.registration_id.as_str())
        .collect();
    assert_eq!(next_ids, ["dev-00010", "dev-00010-late"]);
}

/// Groups page the same way, and `all_enrollment_groups` returns every one in order.
pub async fn page_through_groups(store: Arc<dyn Store>) {
    let scope = scope_of(&store).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..150 {
        let (store, scope) = (Arc::clone(&store), scope.clone());
        tasks.spawn(async move {
            store
                .put_enrollment_group(
                    &scope,
                    group(&format!("group-{i:03}")),
                    Precondition::Absent,
                )
                .await
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task ran").unwrap();
    }
    let expected: Vec<String> = (0..150).map(|i| format!("group-{i:03}")).collect();
    let all: Vec<String> = store
        .all_enrollment_groups(&scope)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.enrollment_group_id.as_str().to_owned())
        .collect();
    assert_eq!(all, expected);
    let mut seen = Vec::new();
    let mut request = PageRequest::first(7);
    loop {
        let page = store
            .list_enrollment_groups(&scope, &request)
            .await
            .unwrap();
        seen.extend(
            page.items
                .into_iter()
                .map(|g| g.enrollment_group_id.as_str().to_owned()),
        );
        match page.continuation {
            Some(token) => request = PageRequest::after(token, 7),
            None => break,
        }
    }
    assert_eq!(seen, expected);
    let now = crate::time::now();
    let report = store
        .operation_report(
            &scope,
            now - chrono::Duration::days(1),
            now + chrono::Duration::days(1),
        )
        .await
        .unwrap();
    assert_eq!(report.totals.get(&OperationKind::GroupCreate), Some(&150));
}
