//! A criterion measurement of the CPU time the whole process spends (all threads, user and
//! kernel), so that comparisons survive a machine shared with other work: wall time there
//! measures the neighbours as much as the code.

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};
use rustix::time::{ClockId, clock_gettime};

/// CPU time of the process, from `CLOCK_PROCESS_CPUTIME_ID`, in nanoseconds.
pub struct ProcessCpu;

fn now_ns() -> u64 {
    let t = clock_gettime(ClockId::ProcessCPUTime);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Measurement for ProcessCpu {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        now_ns()
    }
    fn end(&self, start: u64) -> u64 {
        now_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuMs
    }
}

/// Shows CPU time in milliseconds and throughput per CPU-second.
struct CpuMs;

impl ValueFormatter for CpuMs {
    fn scale_values(&self, _typical_ns: f64, values: &mut [f64]) -> &'static str {
        values.iter_mut().for_each(|v| *v /= 1e6);
        "ms cpu"
    }

    fn scale_throughputs(
        &self,
        _typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let (amount, unit) = match *throughput {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => {
                (n as f64, "Kelem/cpu-s")
            }
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => (n as f64, "KB/cpu-s"),
            Throughput::Bits(n) => (n as f64, "Kbit/cpu-s"),
        };
        values.iter_mut().for_each(|v| *v = amount * 1e9 / *v / 1e3);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}
