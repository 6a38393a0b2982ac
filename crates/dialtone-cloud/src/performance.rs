//! How fast a family's vCPU is, relative to a 5th-generation Intel (Skylake / Cascade Lake)
//! vCPU, so that families can be compared by price per unit of performance rather than by
//! price per vCPU.
//!
//! The factors are estimates from the vendors' published generation-over-generation claims
//! (each new Intel generation about 15 % faster per vCPU; AMD Genoa about 50 % over Milan
//! with a whole core per vCPU, Turin about 25 % over Genoa; Graviton 3 about 25 % over
//! Graviton 2, Graviton 4 about 30 % over Graviton 3), chained from the baseline. They rank
//! families; they are not benchmarks of any workload. The processor of a family follows
//! from its name: the generation digit and the letter after it (`g` Graviton, `a` AMD, `i`
//! or nothing Intel).

/// The processor behind an instance family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Processor {
    /// Intel before Ice Lake (Haswell/Broadwell in `t2`).
    IntelLegacy,
    IntelSkylake,
    IntelIceLake,
    IntelSapphireRapids,
    IntelGraniteRapids,
    AmdNaples,
    AmdMilan,
    AmdGenoa,
    AmdTurin,
    Graviton1,
    Graviton2,
    Graviton3,
    Graviton4,
}

impl Processor {
    /// Performance per vCPU relative to [`Processor::IntelSkylake`].
    pub fn performance(self) -> f64 {
        match self {
            Processor::IntelLegacy => 0.85,
            Processor::IntelSkylake => 1.0,
            Processor::IntelIceLake => 1.15,
            Processor::IntelSapphireRapids => 1.3,
            Processor::IntelGraniteRapids => 1.5,
            Processor::AmdNaples => 0.9,
            Processor::AmdMilan => 1.1,
            Processor::AmdGenoa => 1.5,
            Processor::AmdTurin => 1.9,
            Processor::Graviton1 => 0.6,
            Processor::Graviton2 => 1.05,
            Processor::Graviton3 => 1.3,
            Processor::Graviton4 => 1.6,
        }
    }

    /// The processor of `family` (`m7g`, `c8i-flex`, `x2iedn`, `t3a`, …).
    pub fn of_family(family: &str) -> Processor {
        let class_end = family
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(family.len());
        let rest = &family[class_end..];
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let generation: u32 = rest[..digits_end].parse().unwrap_or(0);
        let suffix = &rest[digits_end..];
        if family == "a1" {
            return Processor::Graviton1;
        }
        match (suffix.chars().next(), generation) {
            (Some('g'), 0..=6) => Processor::Graviton2,
            (Some('g'), 7) => Processor::Graviton3,
            (Some('g'), _) => Processor::Graviton4,
            (Some('a'), 0..=5) => Processor::AmdNaples,
            (Some('a'), 6) => Processor::AmdMilan,
            (Some('a'), 7) => Processor::AmdGenoa,
            (Some('a'), _) => Processor::AmdTurin,
            // `x2i…` and `i4i` are Ice Lake, named after their own class's generation.
            (Some('i'), 0..=6) => Processor::IntelIceLake,
            (Some('i'), 7) => Processor::IntelSapphireRapids,
            (Some('i'), _) => Processor::IntelGraniteRapids,
            _ if family == "t2" => Processor::IntelLegacy,
            _ => Processor::IntelSkylake,
        }
    }
}

/// The family's class: the letters before its generation (`m`, `c`, `r`, `t`, `x`, `im`, …).
/// Families of one class and architecture are interchangeable in shape, so a node pool
/// picks one of them.
pub fn class_of(family: &str) -> &str {
    let end = family
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(family.len());
    &family[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstanceCatalog;

    #[test]
    fn processors_follow_family_names() {
        for (family, processor) in [
            ("m5", Processor::IntelSkylake),
            ("m5zn", Processor::IntelSkylake),
            ("t2", Processor::IntelLegacy),
            ("m6i", Processor::IntelIceLake),
            ("x2iedn", Processor::IntelIceLake),
            ("c7i-flex", Processor::IntelSapphireRapids),
            ("r8i", Processor::IntelGraniteRapids),
            ("t3a", Processor::AmdNaples),
            ("c6a", Processor::AmdMilan),
            ("m7a", Processor::AmdGenoa),
            ("m8azn", Processor::AmdTurin),
            ("a1", Processor::Graviton1),
            ("x2gd", Processor::Graviton2),
            ("im4gn", Processor::Graviton2),
            ("t4g", Processor::Graviton2),
            ("c7gn", Processor::Graviton3),
            ("r8g", Processor::Graviton4),
        ] {
            assert_eq!(Processor::of_family(family), processor, "{family}");
        }
        assert_eq!(class_of("m7i-flex"), "m");
        assert_eq!(class_of("im4gn"), "im");
    }

    #[test]
    fn newer_generations_cost_less_per_unit_of_performance() {
        let catalog = InstanceCatalog::builtin();
        let best = |family: &str| {
            catalog
                .iter()
                .filter(|t| t.family == family)
                .map(|t| t.usd_per_performance())
                .fold(f64::INFINITY, f64::min)
        };
        for (older, newer) in [
            ("m5", "m7i"),
            ("m6g", "m8g"),
            ("c6a", "c8a"),
            ("m6i", "m8i"),
        ] {
            assert!(best(newer) < best(older), "{newer} beats {older}");
        }
    }
}
