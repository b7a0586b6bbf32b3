//! `[realtime]`: real-time priority, memory locking, and the CPU the
//! per-block threads share (`realtime.cpu`, with its own parser: a string
//! or a number in one key).

use serde::{Deserialize, Serialize};

/// `[realtime]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RealtimeConfig {
    /// Ask for SCHED_FIFO at all.
    pub enabled: bool,
    /// SCHED_FIFO priority of the capture thread.
    pub capture_priority: u8,
    /// SCHED_FIFO priority of the bands worker (the spectrum worker runs 1,
    /// the OSC sender 5 below it).
    pub worker_priority: u8,
    /// `mlockall` the process.
    pub lock_memory: bool,
    /// Which CPU the per-block threads (capture, workers, OSC sender) share.
    pub cpu: CpuPin,
}

/// `realtime.cpu`: where the threads that run once per block are kept.
///
/// Every block wakes the capture thread, the bands worker and the OSC
/// sender in turn; on one CPU each hand-over is a plain wake-up, across
/// CPUs it is an inter-processor interrupt (a VM exit under
/// virtualisation) and cold caches. Their work is a few per cent of one
/// core and they are SCHED_FIFO, so sharing one CPU costs them no latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CpuPin {
    /// The last CPU the process may run on, when it may run on two or more.
    #[default]
    Auto,
    /// Leave placement to the scheduler.
    Off,
    /// This CPU (0-based, as in `taskset -c`).
    Cpu(u16),
}

/// Largest CPU number `realtime.cpu` accepts (the kernel's `CPU_SETSIZE` - 1).
pub const MAX_CPU_INDEX: u16 = 1023;

impl Serialize for CpuPin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            CpuPin::Auto => s.serialize_str("auto"),
            CpuPin::Off => s.serialize_str("off"),
            CpuPin::Cpu(n) => s.serialize_u16(*n),
        }
    }
}

impl<'de> Deserialize<'de> for CpuPin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CpuPin;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(f, "\"auto\", \"off\" or a CPU number 0..={MAX_CPU_INDEX}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CpuPin, E> {
                match v {
                    "auto" => Ok(CpuPin::Auto),
                    "off" => Ok(CpuPin::Off),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<CpuPin, E> {
                match u16::try_from(v) {
                    Ok(n) if n <= MAX_CPU_INDEX => Ok(CpuPin::Cpu(n)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<CpuPin, E> {
                match u16::try_from(v) {
                    Ok(n) if n <= MAX_CPU_INDEX => Ok(CpuPin::Cpu(n)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            enabled: true,
            capture_priority: 70,
            worker_priority: 60,
            lock_memory: true,
            cpu: CpuPin::Auto,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn cpu_of(value: &str) -> Result<CpuPin, String> {
        load_str(&format!("[realtime]\ncpu = {value}\n"))
            .map(|c| c.realtime.cpu)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn cpu_takes_auto_off_or_a_cpu_number() {
        assert_eq!(cpu_of("\"auto\""), Ok(CpuPin::Auto));
        assert_eq!(cpu_of("\"off\""), Ok(CpuPin::Off));
        assert_eq!(cpu_of("0"), Ok(CpuPin::Cpu(0)));
        assert_eq!(cpu_of("1023"), Ok(CpuPin::Cpu(MAX_CPU_INDEX)));
        assert_eq!(load_str("").unwrap().realtime.cpu, CpuPin::Auto);
    }

    #[test]
    fn cpu_refuses_anything_else_naming_the_key_and_the_choices() {
        for bad in [
            "\"x\"", "\"\"", "\"1\"", "\"AUTO\"", "-1", "1024", "70000", "1.5", "true", "[1]",
        ] {
            let e = cpu_of(bad).expect_err(bad);
            assert!(e.contains("realtime.cpu"), "{bad}: {e}");
            assert!(
                e.contains("\"auto\", \"off\" or a CPU number 0..=1023"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn cpu_round_trips_through_toml() {
        for pin in [CpuPin::Auto, CpuPin::Off, CpuPin::Cpu(7)] {
            let rt = RealtimeConfig {
                cpu: pin,
                ..RealtimeConfig::default()
            };
            let text = toml::to_string(&rt).unwrap();
            let back: RealtimeConfig = toml::from_str(&text).unwrap();
            assert_eq!(back.cpu, pin, "{text}");
        }
    }
}
