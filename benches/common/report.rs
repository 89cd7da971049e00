//! The report: one [`Section`] per measure (procpool's sample and its
//! peers'), printed as a Markdown table of medians with the ratio
//! procpool ÷ peer, what that ratio means, and whether each target is met;
//! then the spread of every sample and the sizes that were run. Peers
//! that could not run (a Python peer that could not be installed) are
//! listed as unavailable, never given a number. Shared by the `peers` and
//! `cluster` benches, each of which words its heading and notes
//! ([`Framing`]).

use std::fmt::Write as _;

use crate::harness::{Opts, Sample, load_average};

/// Which way is better for a measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    /// Times: lower is better.
    Lower,
    /// Rates, bandwidths, speedups: higher is better.
    Higher,
}

/// A target on the ratio procpool ÷ peer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target {
    /// The ratio must be at most this.
    AtMost(f64),
    /// The ratio must be at least this.
    AtLeast(f64),
}

impl Target {
    fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtMost(t) => ratio <= t,
            Target::AtLeast(t) => ratio >= t,
        }
    }

    /// `≤ 1.5`, `≥ 0.909`: at most three decimals, without trailing zeros.
    fn describe(self) -> String {
        let (sign, t) = match self {
            Target::AtMost(t) => ("≤", t),
            Target::AtLeast(t) => ("≥", t),
        };
        let t = format!("{t:.3}");
        format!("{sign} {}", t.trim_end_matches('0').trim_end_matches('.'))
    }
}

#[derive(Debug)]
struct Peer {
    name: String,
    sample: Sample,
    target: Option<Target>,
}

/// A peer that did not run, and why.
#[derive(Debug)]
struct Missing {
    name: String,
    why: String,
    target: Option<Target>,
}

/// One measure of one workload: procpool's sample and its peers'.
#[derive(Debug)]
pub(crate) struct Section {
    title: String,
    /// The measured side's name: `procpool`, or `sandboxed` where the
    /// peer is the unsandboxed pool ([`Section::subject`]).
    subject: &'static str,
    unit: &'static str,
    better: Better,
    procpool: Sample,
    peers: Vec<Peer>,
    missing: Vec<Missing>,
    note: String,
}

impl Section {
    /// A measure titled e.g. `(a) apply round trip`, in `unit`, with
    /// procpool's sample.
    pub(crate) fn new(title: &str, unit: &'static str, better: Better, procpool: Sample) -> Section {
        Section {
            title: title.to_owned(),
            subject: "procpool",
            unit,
            better,
            procpool,
            peers: Vec::new(),
            missing: Vec::new(),
            note: String::new(),
        }
    }

    /// Adds a peer, with the target on procpool ÷ peer if there is one.
    pub(crate) fn peer(mut self, name: &str, sample: Sample, target: Option<Target>) -> Section {
        self.peers.push(Peer {
            name: name.to_owned(),
            sample,
            target,
        });
        self
    }

    /// Names the measured side `subject` instead of `procpool` (in the
    /// meaning column, the targets and the spread).
    #[allow(dead_code)] // Only `peers` has sandboxed sections.
    pub(crate) fn subject(mut self, subject: &'static str) -> Section {
        self.subject = subject;
        self
    }

    /// Adds a peer that did not run (`why`), with the target it would
    /// have had: a row that says so, and no number.
    #[allow(dead_code)] // Only `cluster` has peers that may not install.
    pub(crate) fn missing(mut self, name: &str, why: &str, target: Option<Target>) -> Section {
        self.missing.push(Missing {
            name: name.to_owned(),
            why: why.to_owned(),
            target,
        });
        self
    }

    /// What was run (sizes, repetitions), printed under the table.
    pub(crate) fn note(mut self, note: String) -> Section {
        self.note = note;
        self
    }

    /// What a ratio means, in words: `procpool 2.1× faster`.
    fn verdict(&self, ratio: f64) -> String {
        if !ratio.is_finite() || ratio <= 0.0 {
            return "n/a".to_owned();
        }
        let better = match self.better {
            Better::Lower => ratio < 1.0,
            Better::Higher => ratio > 1.0,
        };
        let factor = if ratio >= 1.0 { ratio } else { 1.0 / ratio };
        let (good, bad) = match self.unit {
            "×" => ("better", "worse"),
            _ => ("faster", "slower"),
        };
        format!(
            "{} {} {}",
            self.subject,
            times(factor),
            if better { good } else { bad }
        )
    }
}

/// A value with three significant digits and an SI suffix above 10⁴.
fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".to_owned();
    }
    let (x, suffix) = match v.abs() {
        a if a >= 1e9 => (v / 1e9, " G"),
        a if a >= 1e6 => (v / 1e6, " M"),
        a if a >= 1e4 => (v / 1e3, " k"),
        _ => (v, ""),
    };
    let digits = match x.abs() {
        a if a >= 100.0 => 0,
        a if a >= 10.0 => 1,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    format!("{x:.digits$}{suffix}")
}

/// A ratio as `2.35×`.
fn times(r: f64) -> String {
    match r {
        r if r >= 100.0 => format!("{r:.0}×"),
        r if r >= 10.0 => format!("{r:.1}×"),
        r if r >= 0.1 => format!("{r:.2}×"),
        r => format!("{r:.3}×"),
    }
}

/// Prints `rows` as a Markdown table with aligned columns.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width = |c: usize| {
        rows.iter()
            .map(|r| r.get(c).map_or(0, |s| s.chars().count()))
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push('|');
        for (c, w) in widths.iter().enumerate() {
            let cell = row.get(c).map_or("", String::as_str);
            let _ = write!(out, " {cell:<w$} |");
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for w in &widths {
                let _ = write!(out, "{}|", "-".repeat(w + 2));
            }
            out.push('\n');
        }
    }
    out
}

/// What one bench's report says around its tables: the heading, the
/// command that measures, and the paragraphs of its own.
#[derive(Debug)]
pub(crate) struct Framing {
    /// The heading (after `## `), given the run's [`Opts::mode`].
    pub(crate) heading: fn(&str) -> String,
    /// The command that a smoke test's report says to run to measure,
    /// e.g. `cargo bench --bench peers`.
    pub(crate) command: &'static str,
    /// A paragraph under the one on ratios, in every report.
    pub(crate) note: Option<&'static str>,
    /// A paragraph under the one on ratios where a section's measured
    /// side is not procpool ([`Section::subject`]).
    pub(crate) subject_note: Option<&'static str>,
}

/// Prints the whole report on stdout, worded by `framing`.
pub(crate) fn print(
    framing: &Framing,
    sections: &[Section],
    opts: &Opts,
    total_secs: f64,
    load_before: &str,
) {
    println!("\n## {}\n", (framing.heading)(opts.mode()));
    if opts.is_smoke() {
        println!(
            "A smoke test: tiny sizes, one repetition, perhaps an unoptimised build; the numbers mean \
             nothing. Run `{}` (or `-- --quick`) to measure.\n",
            framing.command
        );
    }
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "{cpus} CPUs; load average {load_before} before the run, {} after.\n",
        load_average()
    );
    println!(
        "Ratio = procpool median ÷ peer median, in the row's unit. For times (lower is better) a ratio \
         below 1 means procpool is faster; for rates, bandwidths and speedups (higher is better) a \
         ratio above 1 means procpool is faster. Targets are on that ratio.\n"
    );
    if let Some(note) = framing.note {
        println!("{note}\n");
    }
    if let Some(note) = framing.subject_note
        && sections.iter().any(|s| s.subject != "procpool")
    {
        println!("{note}\n");
    }
    let mut rows = vec![
        [
            "workload",
            "procpool",
            "peer",
            "peer median",
            "procpool ÷ peer",
            "meaning",
            "target",
            "met",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut targets = Vec::new();
    for s in sections {
        let direction = match s.better {
            Better::Lower => "lower is better",
            Better::Higher => "higher is better",
        };
        let pp = s.procpool.median();
        let label = |i: usize| {
            if i == 0 {
                format!("{} [{}, {direction}]", s.title, s.unit)
            } else {
                String::new()
            }
        };
        for (i, p) in s.peers.iter().enumerate() {
            let ratio = pp / p.sample.median();
            let met = p.target.map(|t| t.met(ratio));
            let label = label(i);
            rows.push(vec![
                label,
                num(pp),
                p.name.clone(),
                num(p.sample.median()),
                times(ratio),
                s.verdict(ratio),
                p.target.map_or(String::new(), Target::describe),
                met.map_or(String::new(), |m| if m { "yes" } else { "NO" }.to_owned()),
            ]);
            if let (Some(t), Some(m)) = (p.target, met) {
                targets.push(format!(
                    "- {}: {} {} {} ÷ {} {} {} = {} (target {}): {}",
                    s.title,
                    s.subject,
                    num(pp),
                    s.unit,
                    p.name,
                    num(p.sample.median()),
                    s.unit,
                    times(ratio),
                    t.describe(),
                    if m { "met" } else { "NOT MET" }
                ));
            }
        }
        for (i, m) in s.missing.iter().enumerate() {
            rows.push(vec![
                label(s.peers.len() + i),
                num(pp),
                m.name.clone(),
                "unavailable".to_owned(),
                "n/a".to_owned(),
                "not measured".to_owned(),
                m.target.map_or(String::new(), Target::describe),
                m.target.map_or(String::new(), |_| "n/a".to_owned()),
            ]);
            targets.push(format!(
                "- {}: {} unavailable, not measured{}: {}",
                s.title,
                m.name,
                m.target
                    .map_or(String::new(), |t| format!(" (target {})", t.describe())),
                m.why
            ));
        }
    }
    print!("{}", table(&rows));
    if !targets.is_empty() {
        println!("\n### Targets\n");
        println!("{}", targets.join("\n"));
    }
    println!("\n### Spread (min / median / max over the repetitions)\n");
    let mut spread = vec![
        ["measure", "side", "n", "min", "median", "max"]
            .map(String::from)
            .to_vec(),
    ];
    for s in sections {
        let sides = std::iter::once((s.subject, &s.procpool))
            .chain(s.peers.iter().map(|p| (p.name.as_str(), &p.sample)));
        for (i, (name, sample)) in sides.enumerate() {
            spread.push(vec![
                if i == 0 {
                    format!("{} [{}]", s.title, s.unit)
                } else {
                    String::new()
                },
                name.to_owned(),
                sample.len().to_string(),
                num(sample.min()),
                num(sample.median()),
                num(sample.max()),
            ]);
        }
    }
    print!("{}", table(&spread));
    println!("\n### Sizes\n");
    for s in sections.iter().filter(|s| !s.note.is_empty()) {
        println!("- {}: {}", s.title, s.note);
    }
    println!("\nTotal run time: {total_secs:.1} s");
}
