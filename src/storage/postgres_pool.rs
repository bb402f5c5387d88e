//! The gateway's Postgres pool, which knows whether `DATABASE_URL` is a transaction pooler.
//!
//! Unnamed statements alone are not enough there: sqlx parses a statement (Parse, Describe, Sync)
//! and then binds and executes it (Bind, Execute, Sync), and a transaction pooler may hand each
//! Sync's round to a different server connection, or give the server connection to another client
//! in between, whose own Parse replaces the unnamed statement; the Bind then runs the other
//! client's statement with this one's arguments. Inside a transaction the pooler keeps the server
//! connection, so behind one every statement run on the pool gets a transaction of its own
//! (BEGIN and COMMIT: two more round trips each); statements a store runs in its own transaction
//! are pinned already. On a session (direct, or a session pooler) nothing is added.

use std::ops::Deref;

use futures_util::future::BoxFuture;
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};
use sqlx::postgres::{PgPool, PgQueryResult, PgRow, PgStatement, PgTypeInfo};
use sqlx::{Either, Execute, Executor, Postgres, SqlStr};

/// A `PgPool` (it derefs to one, for transactions and closing) whose `Executor` pins each statement
/// to one server connection when `DATABASE_URL` is a transaction pooler.
#[derive(Clone, Debug)]
pub struct PostgresPool {
    pool: PgPool,
    transaction_pooler: bool,
}

impl PostgresPool {
    /// `transaction_pooler`: run each statement in a transaction of its own.
    pub fn new(pool: PgPool, transaction_pooler: bool) -> Self {
        PostgresPool { pool, transaction_pooler }
    }

    /// Whether each statement runs in a transaction of its own.
    pub fn behind_transaction_pooler(&self) -> bool {
        self.transaction_pooler
    }
}

impl Deref for PostgresPool {
    type Target = PgPool;
    fn deref(&self) -> &PgPool {
        &self.pool
    }
}

impl<'c> Executor<'c> for &'c PostgresPool {
    type Database = Postgres;

    fn fetch_many<'e, 'q: 'e, E>(self, query: E) -> BoxStream<'e, Result<Either<PgQueryResult, PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooler {
            return self.pool.fetch_many(query);
        }
        // Collected before the commit: a row handed out before it could belong to a transaction
        // that then fails.
        let pool = &self.pool;
        stream::once(async move {
            let mut tx = pool.begin().await?;
            let results: Vec<_> = (&mut *tx).fetch_many(query).try_collect().await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(stream::iter(results.into_iter().map(Ok)))
        })
        .try_flatten()
        .boxed()
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, Result<Option<PgRow>, sqlx::Error>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Postgres>,
    {
        if !self.transaction_pooler {
            return self.pool.fetch_optional(query);
        }
        let pool = &self.pool;
        Box::pin(async move {
            let mut tx = pool.begin().await?;
            let row = (&mut *tx).fetch_optional(query).await?;
            tx.commit().await?;
            Ok(row)
        })
    }

    fn prepare_with<'e>(self, sql: SqlStr, parameters: &'e [PgTypeInfo]) -> BoxFuture<'e, Result<PgStatement, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.prepare_with(sql, parameters)
    }

    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, Result<sqlx::Describe<Postgres>, sqlx::Error>>
    where
        'c: 'e,
    {
        self.pool.describe(sql)
    }
}
