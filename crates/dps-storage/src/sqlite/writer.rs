//! The single writer: one connection, one thread, group commit.
//!
//! Every write is sent to this thread as a [`Job`]. The thread owns the only
//! read-write connection and runs every statement itself (rusqlite, no
//! hand-off to another thread per statement). It takes whatever jobs
//! are queued (up to `max_batch`), runs them in one transaction, each inside
//! its own savepoint so that a refused job (etag conflict, duplicate operation
//! id) is rolled back alone, commits once, and only then answers each caller.
//! While one batch commits the next one queues up, so under concurrency many
//! writes share one commit. A caller is never told "done" before its
//! transaction committed; if the commit fails, every job of the batch gets the
//! error and none of them is stored.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dps_model::{
    EnrollmentGroup, EnrollmentGroupId, IdScope, IndividualEnrollment, Precondition,
    RegistrationId, Tenant,
};
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::authorities::AuthorityJob;
use super::bulk;
use super::rows::{BillingRow, RegistrationCommit};
use super::sql;
use super::statements::failed;
use super::writes;
use crate::error::{StoreError, StoreResult};
use crate::store::Written;
use crate::writer_stats::WriterCounters;

/// Where a job's answer goes.
pub(crate) type Reply<T> = oneshot::Sender<StoreResult<T>>;

/// One write, with the channel its answer goes to.
#[derive(Debug)]
pub(crate) enum Job {
    CreateTenant(Box<Tenant>, Reply<Tenant>),
    ReplaceTenant(Box<Tenant>, Precondition, Reply<Tenant>),
    DeleteTenant(IdScope, Precondition, Reply<()>),
    PutEnrollment(
        IdScope,
        Box<IndividualEnrollment>,
        Precondition,
        Reply<Written<IndividualEnrollment>>,
    ),
    DeleteEnrollment(IdScope, RegistrationId, Precondition, Reply<()>),
    DeleteEnrollmentAndRegistration(IdScope, RegistrationId, Precondition, Reply<()>),
    PutGroup(
        IdScope,
        Box<EnrollmentGroup>,
        Precondition,
        Reply<Written<EnrollmentGroup>>,
    ),
    DeleteGroup(IdScope, EnrollmentGroupId, Precondition, Reply<()>),
    ImportEnrollments(IdScope, Vec<IndividualEnrollment>, Reply<usize>),
    CommitRegistration(Box<RegistrationCommit>, Reply<()>),
    DeleteRegistration(IdScope, RegistrationId, Precondition, Reply<()>),
    RecordOperation(Box<BillingRow>, Reply<()>),
    PurgeOperations(DateTime<Utc>, Reply<u64>),
    /// A certificate authority or credential policy write.
    Authority(Box<AuthorityJob>),
    /// Finish the queued work, close the connection, then answer.
    Shutdown(oneshot::Sender<()>),
}

/// The answer of a job that ran, sent once the batch's fate is known:
/// `None` when the transaction committed, else the commit's error.
pub(super) type Settle = Box<dyn FnOnce(Option<&StoreError>) + Send>;

pub(super) fn settle<T: Send + 'static>(reply: Reply<T>, result: StoreResult<T>) -> (bool, Settle) {
    let ok = result.is_ok();
    let settle: Settle = Box::new(move |commit_error| {
        let answer = match (result, commit_error) {
            (Ok(_), Some(err)) => Err(err.clone()),
            (result, _) => result,
        };
        // The caller may have gone away (cancelled request): nothing to tell.
        let _ = reply.send(answer);
    });
    (ok, settle)
}

impl Job {
    /// Answer `err` without running.
    fn fail(self, err: StoreError) {
        fn send<T>(reply: Reply<T>, err: StoreError) {
            let _ = reply.send(Err(err));
        }
        match self {
            Job::CreateTenant(_, r) | Job::ReplaceTenant(_, _, r) => send(r, err),
            Job::DeleteTenant(_, _, r)
            | Job::DeleteEnrollment(_, _, _, r)
            | Job::DeleteEnrollmentAndRegistration(_, _, _, r)
            | Job::DeleteGroup(_, _, _, r)
            | Job::CommitRegistration(_, r)
            | Job::DeleteRegistration(_, _, _, r)
            | Job::RecordOperation(_, r) => send(r, err),
            Job::PutEnrollment(_, _, _, r) => send(r, err),
            Job::PutGroup(_, _, _, r) => send(r, err),
            Job::ImportEnrollments(_, _, r) => send(r, err),
            Job::PurgeOperations(_, r) => send(r, err),
            Job::Authority(job) => job.fail(err),
            Job::Shutdown(done) => {
                let _ = done.send(());
            }
        }
    }

    /// Run the job's statements; returns whether it succeeded and how to answer it.
    fn run(self, conn: &Connection) -> (bool, Settle) {
        match self {
            Job::CreateTenant(tenant, r) => settle(r, writes::create_tenant(conn, *tenant)),
            Job::ReplaceTenant(tenant, pre, r) => {
                settle(r, writes::replace_tenant(conn, *tenant, pre))
            }
            Job::DeleteTenant(scope, pre, r) => settle(r, writes::delete_tenant(conn, &scope, pre)),
            Job::PutEnrollment(scope, e, pre, r) => settle(
                r,
                writes::put_record(conn, &sql::ENROLLMENTS, &scope, *e, pre),
            ),
            Job::DeleteEnrollment(scope, id, pre, r) => settle(
                r,
                writes::delete_record::<IndividualEnrollment>(
                    conn,
                    &sql::ENROLLMENTS,
                    &scope,
                    id.as_str(),
                    &id.key(),
                    pre,
                ),
            ),
            Job::DeleteEnrollmentAndRegistration(scope, id, pre, r) => settle(
                r,
                writes::delete_enrollment_and_registration(conn, &scope, &id, pre),
            ),
            Job::PutGroup(scope, g, pre, r) => {
                settle(r, writes::put_record(conn, &sql::GROUPS, &scope, *g, pre))
            }
            Job::DeleteGroup(scope, id, pre, r) => settle(
                r,
                writes::delete_record::<EnrollmentGroup>(
                    conn,
                    &sql::GROUPS,
                    &scope,
                    id.as_str(),
                    &id.key(),
                    pre,
                ),
            ),
            Job::ImportEnrollments(scope, all, r) => {
                settle(r, writes::import_enrollments(conn, &scope, all))
            }
            Job::CommitRegistration(commit, r) => {
                settle(r, writes::commit_registration(conn, &commit))
            }
            Job::DeleteRegistration(scope, id, pre, r) => {
                settle(r, writes::delete_registration(conn, &scope, &id, pre))
            }
            Job::RecordOperation(row, r) => settle(r, writes::insert_billing(conn, &row)),
            Job::PurgeOperations(before, r) => settle(r, writes::purge_operations(conn, before)),
            Job::Authority(job) => job.run(conn),
            Job::Shutdown(done) => {
                // Handled by the loop; answering here keeps the match total.
                let _ = done.send(());
                (true, Box::new(|_| {}))
            }
        }
    }
}
/// The writer thread's name (it shows in profiles and `top -H`).
const THREAD_NAME: &str = "dps-sqlite-writer";

/// Start the writer on a thread of its own, owning `conn`; it runs until
/// every sender is gone or a shutdown arrives.
pub(crate) fn spawn(
    conn: Connection,
    jobs: mpsc::Receiver<Job>,
    max_batch: usize,
    counters: Arc<WriterCounters>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(THREAD_NAME.to_owned())
        .spawn(move || run(conn, jobs, max_batch, counters))
}

fn run(
    conn: Connection,
    mut jobs: mpsc::Receiver<Job>,
    max_batch: usize,
    counters: Arc<WriterCounters>,
) {
    let max_batch = max_batch.max(1);
    let mut shutdown = None;
    while shutdown.is_none() {
        let Some(first) = jobs.blocking_recv() else {
            break;
        };
        let mut batch = Vec::with_capacity(max_batch.min(64));
        match first {
            Job::Shutdown(done) => shutdown = Some(done),
            job => batch.push(job),
        }
        while shutdown.is_none() && batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(Job::Shutdown(done)) => shutdown = Some(done),
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            counters.batch(batch.len());
            run_batch(&conn, batch);
        }
    }
    // Refuse what is still queued, then close (SQLite checkpoints the WAL when
    // the last connection closes).
    jobs.close();
    while let Ok(job) = jobs.try_recv() {
        job.fail(StoreError::Closed);
    }
    if let Err((_, err)) = conn.close() {
        tracing::warn!(error = %err, "closing the SQLite writer connection failed");
    }
    if let Some(done) = shutdown {
        let _ = done.send(());
    }
}

/// Run a transaction-control statement (prepared once, like the others).
fn control(conn: &Connection, statement: &'static str) -> rusqlite::Result<()> {
    conn.prepare_cached(statement)?.raw_execute().map(|_| ())
}

fn begin(conn: &Connection) -> StoreResult<()> {
    control(conn, "BEGIN IMMEDIATE").map_err(failed("starting a transaction"))
}

/// Undo the open transaction, if any (a failed COMMIT may leave it open).
fn rollback(conn: &Connection) {
    if !conn.is_autocommit() {
        if let Err(err) = control(conn, "ROLLBACK") {
            tracing::warn!(error = %err, "rolling back an SQLite transaction failed");
        }
    }
}

/// Commit; on failure nothing of the transaction is stored.
fn commit(conn: &Connection) -> StoreResult<()> {
    control(conn, "COMMIT").map_err(|err| {
        rollback(conn);
        failed("committing")(err)
    })
}

/// A job the multi-row fast path can take.
enum FastJob {
    Commit(Box<RegistrationCommit>, Reply<()>),
    Billing(Box<BillingRow>, Reply<()>),
}

impl FastJob {
    fn take(job: Job) -> Result<FastJob, Job> {
        match job {
            // A certificate supersedes older ones: the one-by-one path.
            Job::CommitRegistration(commit, r) if commit.certificate.is_none() => {
                Ok(FastJob::Commit(commit, r))
            }
            Job::RecordOperation(row, r) => Ok(FastJob::Billing(row, r)),
            other => Err(other),
        }
    }

    fn into_job(self) -> Job {
        match self {
            FastJob::Commit(commit, r) => Job::CommitRegistration(commit, r),
            FastJob::Billing(row, r) => Job::RecordOperation(row, r),
        }
    }
}

/// Store fast jobs with multi-row statements in a transaction of their own.
/// When the database refuses them (a duplicate operation id, an unknown
/// tenant) the transaction is rolled back and the jobs are handed back, to run
/// one by one.
fn run_fast(conn: &Connection, jobs: Vec<FastJob>) -> Result<(), Vec<Job>> {
    let refused = |jobs: Vec<FastJob>| jobs.into_iter().map(FastJob::into_job).collect();
    if begin(conn).is_err() {
        // The slow path meets the same failure and reports it per job.
        return Err(refused(jobs));
    }
    let inserted = {
        let mut commits = Vec::with_capacity(jobs.len());
        let mut rows = Vec::new();
        for job in &jobs {
            match job {
                FastJob::Commit(commit, _) => commits.push(commit.as_ref()),
                FastJob::Billing(row, _) => rows.push(row.as_ref()),
            }
        }
        bulk::insert_fast(conn, &commits, &rows)
    };
    if let Err(err) = inserted {
        tracing::debug!(error = %err, jobs = jobs.len(), "batch refused, retrying job by job");
        rollback(conn);
        return Err(refused(jobs));
    }
    let commit_error = commit(conn).err();
    for job in jobs {
        let (FastJob::Commit(_, reply) | FastJob::Billing(_, reply)) = job;
        let (_, answer) = settle(reply, Ok(()));
        answer(commit_error.as_ref());
    }
    Ok(())
}

/// Run a batch: registration commits and billing rows in bulk, then whatever
/// remains (other writes, and bulk jobs the database refused) one by one.
fn run_batch(conn: &Connection, batch: Vec<Job>) {
    let mut fast = Vec::new();
    let mut slow = Vec::new();
    for job in batch {
        match FastJob::take(job) {
            Ok(job) => fast.push(job),
            Err(job) => slow.push(job),
        }
    }
    if fast.len() > 1 {
        if let Err(refused) = run_fast(conn, fast) {
            slow.extend(refused);
        }
    } else {
        slow.extend(fast.into_iter().map(FastJob::into_job));
    }
    if !slow.is_empty() {
        run_one_by_one(conn, slow);
    }
}

/// Close the job's savepoint: keep its statements, or undo them.
fn end_savepoint(conn: &Connection, keep: bool) -> rusqlite::Result<()> {
    if !keep {
        control(conn, "ROLLBACK TO SAVEPOINT job")?;
    }
    control(conn, "RELEASE SAVEPOINT job")
}

/// Run jobs in one transaction, each in its own savepoint so that a refused
/// job is rolled back alone.
fn run_one_by_one(conn: &Connection, batch: Vec<Job>) {
    // A lone job needs no savepoint: on failure the whole transaction rolls back.
    let savepoints = batch.len() > 1;
    if let Err(err) = begin(conn) {
        for job in batch {
            job.fail(err.clone());
        }
        return;
    }
    let mut settled: Vec<Settle> = Vec::with_capacity(batch.len());
    let mut any_ok = false;
    let mut jobs = batch.into_iter();
    let mut broken = None;
    for job in jobs.by_ref() {
        if savepoints {
            if let Err(err) = control(conn, "SAVEPOINT job") {
                broken = Some((failed("opening a savepoint")(err), Some(job)));
                break;
            }
        }
        let (ok, answer) = job.run(conn);
        settled.push(answer);
        if savepoints {
            if let Err(err) = end_savepoint(conn, ok) {
                broken = Some((failed("closing a savepoint")(err), None));
                break;
            }
        }
        any_ok |= ok;
    }
    if let Some((err, unrun)) = broken {
        // The transaction is unusable: nothing of this batch is stored.
        rollback(conn);
        for answer in settled {
            answer(Some(&err));
        }
        if let Some(job) = unrun {
            job.fail(err.clone());
        }
        for job in jobs {
            job.fail(err.clone());
        }
        return;
    }
    if !any_ok {
        // Nothing to keep: every job was refused and answers its own error.
        rollback(conn);
        for answer in settled {
            answer(None);
        }
        return;
    }
    let commit_error = commit(conn).err();
    for answer in settled {
        answer(commit_error.as_ref());
    }
}
