//! Conditional writes that lose a race (or hit a serialization failure) are
//! run again, with jitter, until they settle or contention is reported.

use std::time::Duration;

use crate::error::{Entity, StoreError, StoreResult};

const MAX_ATTEMPTS: u32 = 64;

/// The result of one attempt at a conditional write.
pub(super) enum Attempt<T> {
    /// Settled: stored, or refused for a reason the caller must hear.
    Done(T),
    /// Another writer changed the row between our read and our write.
    Lost,
}

/// Runs attempts until one settles, backing off between lost ones.
pub(super) struct Retry {
    entity: Entity,
    id: String,
    attempts: u32,
}

impl Retry {
    pub(super) fn new(entity: Entity, id: &str) -> Self {
        Retry {
            entity,
            id: id.to_owned(),
            attempts: 0,
        }
    }

    /// `Some(answer)` when the attempt settled the write; `None` to try again.
    pub(super) async fn settle<T>(
        &mut self,
        attempt: StoreResult<Attempt<T>>,
    ) -> Option<StoreResult<T>> {
        match attempt {
            Ok(Attempt::Done(value)) => return Some(Ok(value)),
            Ok(Attempt::Lost) => {}
            Err(err) if is_transient(&err) => {}
            Err(err) => return Some(Err(err)),
        }
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            return Some(Err(StoreError::Contention {
                entity: self.entity,
                id: std::mem::take(&mut self.id),
                attempts: self.attempts,
            }));
        }
        // Spread the retries of writers that collided: 0-1 ms, then up to ~16 ms.
        let ceiling = 1u64 << self.attempts.min(4);
        let pause = rand_below(ceiling * 1000);
        tokio::time::sleep(Duration::from_micros(pause)).await;
        None
    }
}

/// A cheap, good-enough jitter source (no shared RNG on the write path).
fn rand_below(bound: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos.wrapping_mul(2_654_435_761)) % bound.max(1)
}

/// SQLSTATE 40001 (serialization failure) or 40P01 (deadlock): the
/// transaction was rolled back and may simply be run again.
fn is_transient(err: &StoreError) -> bool {
    let StoreError::Database { source, .. } = err else {
        return false;
    };
    match source.as_ref() {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("40001" | "40P01")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lost_attempts_are_retried_then_reported_as_contention() {
        let mut retry = Retry::new(Entity::Enrollment, "dev-1");
        let mut lost = 0;
        let answer = loop {
            if let Some(answer) = retry.settle::<()>(Ok(Attempt::Lost)).await {
                break answer;
            }
            lost += 1;
        };
        assert_eq!(lost, MAX_ATTEMPTS - 1);
        assert!(
            matches!(answer, Err(StoreError::Contention { entity: Entity::Enrollment, ref id, attempts })
                if id == "dev-1" && attempts == MAX_ATTEMPTS),
            "{answer:?}"
        );
    }

    #[tokio::test]
    async fn refusals_are_answered_at_once() {
        let mut retry = Retry::new(Entity::Enrollment, "dev-1");
        let refused = retry
            .settle::<()>(Err(StoreError::NotFound {
                entity: Entity::Enrollment,
                id: "dev-1".to_owned(),
            }))
            .await;
        assert!(matches!(refused, Some(Err(StoreError::NotFound { .. }))));
        assert!(matches!(
            retry.settle(Ok(Attempt::Done(7))).await,
            Some(Ok(7))
        ));
    }

    #[test]
    fn jitter_stays_below_its_bound() {
        for bound in [1, 2, 1000, 16_000] {
            assert!(rand_below(bound) < bound);
        }
        assert_eq!(rand_below(0), 0);
    }
}
