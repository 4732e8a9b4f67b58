//! What a profile did with one request, recorded only when a decision is explained
//! (the admin API's dry run, `kubectl igw explain`): each filter's survivors, each
//! scorer's raw score and weight per candidate, the totals the picker saw and what it
//! picked. Indices point into the decision's candidate table.

/// One profile run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProfileTrace {
    pub profile: String,
    /// The filters in order, each with the candidates left after it. A filter that
    /// left nothing is the last one (the profile failed there).
    pub filters: Vec<FilterTrace>,
    /// The scorers in order; empty when a filter failed the profile.
    pub scorers: Vec<ScorerTrace>,
    /// `(candidate, Σ clamp(raw, 0, 1) × weight)`, as the picker received them.
    pub totals: Vec<(usize, f64)>,
    pub picker: String,
    /// What the picker chose, best first.
    pub picked: Vec<usize>,
}

/// One filter's verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct FilterTrace {
    pub name: String,
    /// The candidates it let through.
    pub kept: Vec<usize>,
}

/// One scorer's scores.
#[derive(Clone, Debug, PartialEq)]
pub struct ScorerTrace {
    pub name: String,
    pub weight: f64,
    /// `(candidate, raw score)`; the profile clamps raw scores to 0..=1 (NaN to 0)
    /// before weighting.
    pub raw: Vec<(usize, f64)>,
}
