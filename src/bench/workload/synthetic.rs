//! Synthetic requests: prompt and output lengths drawn from a distribution, prompt text
//! made of real words so its token count is exactly the drawn length.
//!
//! The distributions mirror inference-perf's `input_distribution` /
//! `output_distribution` (mean, std_dev, min, max; sim-facts §6.2). Lengths are in
//! `cl100k_base` tokens. Pure apart from tokenising.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal, Normal};
use serde::{Deserialize, Serialize};

use super::text::{range_inclusive, words_text};
use super::{ChatMessage, PromptText, WorkloadError, WorkloadRequest};

/// A length distribution, tokens. Draws are rounded and clamped to `min..=max`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum LengthDist {
    Fixed {
        value: usize,
    },
    Uniform {
        min: usize,
        max: usize,
    },
    Normal {
        mean: f64,
        std_dev: f64,
        min: usize,
        max: usize,
    },
    /// Parameterised by the mean and standard deviation of the lengths themselves (not
    /// of their logarithm), as inference-perf states them.
    LogNormal {
        mean: f64,
        std_dev: f64,
        min: usize,
        max: usize,
    },
}

/// A validated [`LengthDist`], ready to draw.
#[derive(Clone, Debug)]
pub(crate) enum Sampler {
    Fixed(usize),
    Uniform(usize, usize),
    Normal(Normal<f64>, usize, usize),
    LogNormal(LogNormal<f64>, usize, usize),
}

impl LengthDist {
    pub(crate) fn sampler(&self, what: &str) -> Result<Sampler, WorkloadError> {
        let invalid = |m: &str| WorkloadError::Invalid(format!("{what}: {m}"));
        let check = |mean: f64, sd: f64, min: usize, max: usize| {
            if min > max {
                return Err(invalid("min is above max"));
            }
            if !(mean.is_finite() && sd.is_finite() && sd >= 0.0) {
                return Err(invalid("mean and std_dev must be finite, std_dev ≥ 0"));
            }
            Ok(())
        };
        Ok(match *self {
            LengthDist::Fixed { value } => Sampler::Fixed(value),
            LengthDist::Uniform { min, max } => {
                check(0.0, 0.0, min, max)?;
                Sampler::Uniform(min, max)
            }
            LengthDist::Normal {
                mean,
                std_dev,
                min,
                max,
            } => {
                check(mean, std_dev, min, max)?;
                match Normal::new(mean, std_dev) {
                    Ok(d) => Sampler::Normal(d, min, max),
                    Err(e) => return Err(invalid(&e.to_string())),
                }
            }
            LengthDist::LogNormal {
                mean,
                std_dev,
                min,
                max,
            } => {
                check(mean, std_dev, min, max)?;
                if mean <= 0.0 {
                    return Err(invalid("a log-normal mean must be > 0"));
                }
                // σ² = ln(1 + (sd/mean)²), μ = ln(mean) − σ²/2 give that mean and sd.
                let var = (1.0 + (std_dev / mean).powi(2)).ln();
                match LogNormal::new(mean.ln() - var / 2.0, var.sqrt()) {
                    Ok(d) => Sampler::LogNormal(d, min, max),
                    Err(e) => return Err(invalid(&e.to_string())),
                }
            }
        })
    }
}

impl Sampler {
    pub(crate) fn draw(&self, rng: &mut impl Rng) -> usize {
        let clamp = |x: f64, min: usize, max: usize| {
            // `as` saturates (negative to 0, huge to usize::MAX) before the clamp.
            (x.round() as usize).clamp(min, max)
        };
        match self {
            Sampler::Fixed(v) => *v,
            Sampler::Uniform(min, max) => range_inclusive(rng, *min, *max),
            Sampler::Normal(d, min, max) => clamp(d.sample(rng), *min, *max),
            Sampler::LogNormal(d, min, max) => clamp(d.sample(rng), *min, *max),
        }
    }
}

/// Requests with independent prompt and output lengths.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyntheticSpec {
    /// Prompt length, tokens (of the text, before any chat template).
    pub input: LengthDist,
    /// `max_tokens`, tokens; a draw of 0 becomes 1.
    pub output: LengthDist,
    /// How many requests; absent means endless.
    #[serde(default)]
    pub num_requests: Option<usize>,
    /// Send as one user chat message instead of completions text.
    #[serde(default)]
    pub chat: bool,
}

impl SyntheticSpec {
    pub(crate) fn generator(&self, seed: u64) -> Result<Generator, WorkloadError> {
        Ok(Generator {
            input: self.input.sampler("synthetic input")?,
            output: self.output.sampler("synthetic output")?,
            left: self.num_requests,
            chat: self.chat,
            rng: StdRng::seed_from_u64(seed),
        })
    }
}

/// The stream behind a synthetic [`super::Workload`].
pub(crate) struct Generator {
    input: Sampler,
    output: Sampler,
    left: Option<usize>,
    chat: bool,
    rng: StdRng,
}

impl Iterator for Generator {
    type Item = WorkloadRequest;

    fn next(&mut self) -> Option<WorkloadRequest> {
        if let Some(left) = &mut self.left {
            *left = left.checked_sub(1)?;
        }
        let input = self.input.draw(&mut self.rng);
        let output = self.output.draw(&mut self.rng);
        // The text keeps its leading space so its token count is exactly `input`.
        let text = words_text(&mut self.rng, input);
        let prompt = if self.chat {
            PromptText::Chat(vec![ChatMessage {
                role: "user".into(),
                content: text,
            }])
        } else {
            PromptText::Text(text)
        };
        Some(WorkloadRequest::new(prompt, output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_of(dist: LengthDist, n: usize) -> (f64, usize, usize) {
        let s = dist.sampler("test").unwrap();
        let mut rng = StdRng::seed_from_u64(5);
        let draws: Vec<usize> = (0..n).map(|_| s.draw(&mut rng)).collect();
        let mean = draws.iter().sum::<usize>() as f64 / n as f64;
        (
            mean,
            *draws.iter().min().unwrap(),
            *draws.iter().max().unwrap(),
        )
    }

    #[test]
    fn distributions_have_their_means_and_bounds() {
        use LengthDist::*;
        let n = 20_000;
        for (dist, want_mean, tolerance, lo, hi) in [
            (Fixed { value: 64 }, 64.0, 0.0, 64, 64),
            (Uniform { min: 10, max: 30 }, 20.0, 0.3, 10, 30),
            (Uniform { min: 7, max: 7 }, 7.0, 0.0, 7, 7),
            (
                Normal {
                    mean: 200.0,
                    std_dev: 20.0,
                    min: 0,
                    max: 1000,
                },
                200.0,
                1.0,
                0,
                1000,
            ),
            (
                LogNormal {
                    mean: 200.0,
                    std_dev: 100.0,
                    min: 1,
                    max: 100_000,
                },
                200.0,
                4.0,
                1,
                100_000,
            ),
            (
                Normal {
                    mean: 100.0,
                    std_dev: 500.0,
                    min: 50,
                    max: 60,
                },
                55.0,
                5.0,
                50,
                60,
            ),
        ] {
            let (mean, min, max) = mean_of(dist.clone(), n);
            assert!((mean - want_mean).abs() <= tolerance, "{dist:?}: {mean}");
            assert!(min >= lo && max <= hi, "{dist:?}: {min}..{max}");
        }
    }

    #[test]
    fn bad_distributions_are_rejected() {
        use LengthDist::*;
        for dist in [
            Uniform { min: 5, max: 4 },
            Normal {
                mean: 1.0,
                std_dev: -1.0,
                min: 0,
                max: 9,
            },
            LogNormal {
                mean: 0.0,
                std_dev: 1.0,
                min: 0,
                max: 9,
            },
        ] {
            assert!(dist.sampler("x").is_err(), "{dist:?}");
        }
    }

    #[test]
    fn prompts_have_the_drawn_token_count() {
        for (input, lo, hi) in [
            (LengthDist::Fixed { value: 1 }, 1, 1),
            (LengthDist::Fixed { value: 333 }, 333, 333),
            (LengthDist::Uniform { min: 20, max: 40 }, 20, 40),
        ] {
            let spec = SyntheticSpec {
                input,
                output: LengthDist::Fixed { value: 0 },
                num_requests: Some(30),
                chat: false,
            };
            let requests: Vec<_> = spec.generator(1).unwrap().collect();
            assert_eq!(requests.len(), 30);
            for r in &requests {
                let n = r.prompt_tokens.len();
                assert!((lo..=hi).contains(&n), "{n} not in {lo}..={hi}");
                assert_eq!(r.output_tokens, 1);
            }
        }
    }
}
