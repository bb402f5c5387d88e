//! The user context the loaders build (schema.md, "Context the loaders build") and the
//! `ContextStore` port that reads it from the database.

use pam_protocol::UserId;
use serde::{Deserialize, Serialize};

use super::{BoxFuture, StoreError};

/// Which loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContextKind {
    /// The profile row and regional preferences.
    Profile,
    /// Month-to-date spend, budgets and income.
    Financial,
    /// Friends and upcoming events.
    Social,
}

impl ContextKind {
    /// Every kind, in loading order.
    pub const ALL: [ContextKind; 3] = [ContextKind::Profile, ContextKind::Financial, ContextKind::Social];

    /// Metric label and cache-key segment.
    pub fn as_str(self) -> &'static str {
        match self {
            ContextKind::Profile => "profile",
            ContextKind::Financial => "financial",
            ContextKind::Social => "social",
        }
    }
}

/// The profile row by `id` plus regional preferences from `user_settings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileContext {
    /// `profiles.full_name`.
    pub full_name: Option<String>,
    /// `profiles.nickname`.
    pub nickname: Option<String>,
    /// `profiles.email`.
    pub email: Option<String>,
    /// `profiles.region`.
    pub region: Option<String>,
    /// `profiles.vehicle_type`.
    pub vehicle_type: Option<String>,
    /// `profiles.vehicle_make_model`.
    pub vehicle_make_model: Option<String>,
    /// `profiles.fuel_type`.
    pub fuel_type: Option<String>,
    /// `profiles.travel_style`.
    pub travel_style: Vec<String>,
    /// `profiles.interests`.
    pub interests: Vec<String>,
    /// From `user_settings.regional_preferences`.
    pub currency: Option<String>,
    /// From `user_settings.regional_preferences`.
    pub units: Option<String>,
    /// From `user_settings.regional_preferences`; UTC when unset.
    pub timezone: Option<String>,
}

/// Month-to-date figures for one expense category.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CategorySpend {
    /// The expense category.
    pub category: String,
    /// Month-to-date spend in it.
    pub spent: f64,
    /// Active budget limit (`monthly_limit` if > 0, else `budgeted_amount`); `None` without a budget.
    pub limit: Option<f64>,
    /// `limit - spent`; `None` without a budget.
    pub remaining: Option<f64>,
    /// `spent / limit * 100`, rounded to one decimal.
    pub utilisation_pct: Option<f64>,
    /// Spend above the limit.
    pub over_budget: bool,
}

/// Month to date: spend per category, active budgets, income.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FinancialContext {
    /// `YYYY-MM` of the month the figures cover.
    pub month: String,
    /// Month-to-date spend in every category.
    pub total_spent: f64,
    /// Sum of the active budget limits.
    pub total_budget: f64,
    /// `total_budget - spent in budgeted categories`.
    pub total_remaining: f64,
    /// Month-to-date income.
    pub income_total: f64,
    /// Every category with spend or an active budget, sorted by name.
    pub categories: Vec<CategorySpend>,
}

/// An accepted friend, with their latest public location if any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Friend {
    /// The friend's user id (uuid text).
    pub user_id: String,
    /// `full_name`, else `nickname`, else "a friend".
    pub name: String,
    /// The latest public location's name.
    pub location_name: Option<String>,
    /// The latest public location's latitude.
    pub latitude: Option<f64>,
    /// The latest public location's longitude.
    pub longitude: Option<f64>,
    /// `traveling`, `camped`, …
    pub status: Option<String>,
}

/// A published group event starting within 90 days.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventSummary {
    /// The event's title.
    pub title: String,
    /// ISO-8601.
    pub start_date: String,
    /// `location.name` (or the whole `location` JSON as text when it has no name).
    pub location: Option<String>,
}

/// Friends (both directions of accepted friendships) and upcoming events (≤ 25, soonest first).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SocialContext {
    /// Accepted friends.
    pub friends: Vec<Friend>,
    /// Published group events ahead.
    pub events: Vec<EventSummary>,
}

/// Reads context from the database (always filtering by user id).
pub trait ContextStore: Send + Sync + 'static {
    /// `Ok(None)` when the user has no profile row.
    fn load_profile<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<Option<ProfileContext>, StoreError>>;
    /// The month-to-date figures.
    fn load_financial<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<FinancialContext, StoreError>>;
    /// Friends and upcoming events.
    fn load_social<'a>(&'a self, user: &'a UserId) -> BoxFuture<'a, Result<SocialContext, StoreError>>;
}

/// What the shared cache answered for one user's context of one kind.
#[derive(Debug, Clone, PartialEq)]
pub enum CacheLookup {
    /// The cached context.
    Hit(serde_json::Value),
    /// Nothing cached. `Some(token)`: hand the token to [`ContextCache::fill`] with what the store
    /// returned. `None`: the cache is unavailable, so there is nothing to fill.
    Miss(Option<FillToken>),
}

/// What a lookup saw of the evictions of its key (opaque to the loaders): a fill with it is
/// refused once the key (or its whole kind) has been evicted since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillToken(pub String);

/// The shared cache between the in-process L1 and the database (Redis in production). Failures
/// are the adapter's business (breaker, metrics, logs): a miss and an outage look the same here.
///
/// A loader looks up *before* it reads the store, and fills with the lookup's token. Data changes
/// are evicted *after* they commit (the NOTIFY follows the commit), so a read that may have seen
/// the old data always started before the eviction, and its fill is refused: an eviction is never
/// undone by a fetch that was already running.
pub trait ContextCache: Send + Sync + 'static {
    /// Looks `user`'s `kind` up; a miss carries the token a later fill needs.
    fn get<'a>(&'a self, kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, CacheLookup>;
    /// Stores `value` unless `user`'s `kind` was evicted since the lookup that gave `token`.
    fn fill<'a>(&'a self, kind: ContextKind, user: &'a UserId, value: &'a serde_json::Value, token: &'a FillToken) -> BoxFuture<'a, ()>;
    /// Drops the cached value and refuses every fill whose lookup came before.
    fn evict<'a>(&'a self, kind: ContextKind, user: &'a UserId) -> BoxFuture<'a, ()>;
    /// [`ContextCache::evict`] for every user of `kind` (after changes may have gone unnoticed).
    fn evict_all(&self, kind: ContextKind) -> BoxFuture<'_, ()>;
}
