//! A test guest for the host bridge; its first argument picks the mode.

use weir_guest::native::{Gemm, Operand, Tensor};
use weir_guest::{Error, Matrix, native};

#[derive(serde::Deserialize)]
struct Shape {
    m: usize,
    n: usize,
    k: usize,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("");
    let arg = |i: usize| args.get(i + 2).cloned().unwrap_or_default();
    let outcome = match mode {
        "gemm" => gemm(),
        "gemm-files" => gemm_files(),
        "metrics" => metrics(),
        "score" => score(),
        "metrics-then-wait" => metrics_then_wait(arg(0).parse().unwrap_or(3)),
        "hostile" => hostile(),
        "chatty-spin" => chatty_spin(),
        "call" => call(&arg(0), &arg(1)),
        "raw" => native::call_raw(&arg(0), arg(1).as_bytes()).map(|bytes| format!("{} bytes", bytes.len())),
        "file-operand" => file_operand(&arg(0)),
        "bench-echo" => bench_echo(arg(0).parse().unwrap_or(1)),
        "flood" => flood(arg(0).parse().unwrap_or(1)),
        "measure" => measure(&arg(0)),
        "bench-gemm" => bench_gemm(arg(0).parse().unwrap_or(64), arg(1).parse().unwrap_or(1), native::gemm),
        "bench-gemm-packed" => {
            bench_gemm(arg(0).parse().unwrap_or(64), arg(1).parse().unwrap_or(1), native::gemm_packed)
        }
        "bench-gemm-files" => bench_gemm_files(arg(0).parse().unwrap_or(64)),
        "bench-gemm-kept" => bench_gemm_kept(arg(0).parse().unwrap_or(64), arg(1).parse().unwrap_or(1)),
        "tensors" => tensors(),
        "tensor-handle" => Tensor::upload(&[1.0, 2.0, 3.0]).map(|tensor| leave(tensor).to_string()),
        "tensor-misuse" => tensor_misuse(),
        "tensor-leave" => tensor_leave(arg(0).parse().unwrap_or(1)),
        other => Ok(format!("unknown mode {other}")),
    };
    let text = match outcome {
        Ok(text) => format!("ok: {text}"),
        Err(err) => format!("error: {err}"),
    };
    if mode != "gemm-files" {
        std::fs::write(weir_guest::output("result"), text).expect("write result");
    }
}

fn read_matrix(name: &str) -> Result<Vec<f32>, Error> {
    let bytes = std::fs::read(weir_guest::input(name))?;
    Ok(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// C = A · B through the bridge, written to /out/c; reports the trace.
fn gemm() -> Result<String, Error> {
    let shape: Shape = weir_guest::params()?;
    let (a, b) = (read_matrix("a")?, read_matrix("b")?);
    let c = native::gemm(shape.m, shape.n, shape.k, &a, &b, false, false)?;
    let bytes: Vec<u8> = c.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(weir_guest::output("c"), bytes)?;
    weir_guest::metric("sum", c.iter().map(|v| f64::from(*v)).sum());
    Ok(format!("{} values", c.len()))
}

/// C = A · B with file operands and result: nothing passes through guest memory.
fn gemm_files() -> Result<String, Error> {
    let shape: Shape = weir_guest::params()?;
    let request = weir_guest_request(shape, Matrix::File { file: "/in/a".into() }, Some("/out/c".into()));
    let response: serde_json::Value = native::call("gemm", &request)?;
    Ok(response.to_string())
}

fn weir_guest_request(shape: Shape, a: Matrix, c_file: Option<String>) -> serde_json::Value {
    serde_json::json!({
        "m": shape.m, "n": shape.n, "k": shape.k,
        "a": a, "b": Matrix::File { file: "/in/b".into() }, "c_file": c_file,
    })
}

fn metrics() -> Result<String, Error> {
    for (i, loss) in [1.0, 0.5, 0.25].into_iter().enumerate() {
        weir_guest::metric("loss", loss);
        weir_guest::progress(i as u64 + 1, 3);
    }
    weir_guest::metric("accuracy", 0.875);
    Ok("reported".into())
}

/// Trains as a model would, in miniature: a `loss` per epoch and a final
/// `accuracy`, both set by the `lr` and `epochs` parameters.
fn score() -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    struct Knobs {
        lr: f64,
        epochs: u32,
    }
    let knobs: Knobs = weir_guest::params()?;
    let mut loss = 1.0;
    for _ in 0..knobs.epochs {
        loss *= 1.0 - knobs.lr;
        weir_guest::metric("loss", loss);
    }
    weir_guest::metric("accuracy", 1.0 - loss);
    Ok(format!("loss {loss}"))
}

/// Reports `loss` = 1, 2, … `count`, then waits (until the run is killed).
fn metrics_then_wait(count: u32) -> Result<String, Error> {
    for i in 1..=count {
        weir_guest::metric("loss", f64::from(i));
    }
    std::thread::sleep(std::time::Duration::from_secs(600));
    Ok("waited".into())
}

/// Writes markup into its logs and a metric's name, as an attacker would.
fn hostile() -> Result<String, Error> {
    println!("<script>alert('stdout')</script>");
    eprintln!("<img src=x onerror=alert('stderr')>");
    for i in 0..3 {
        weir_guest::metric("<script>alert('metric')</script>", f64::from(i));
    }
    Ok("<b>result</b>".into())
}

/// Writes a line to stdout and reports a metric, then spins until cancelled.
fn chatty_spin() -> Result<String, Error> {
    use std::io::Write;
    println!("warming up");
    std::io::stdout().flush()?;
    weir_guest::metric("loss", 1.0);
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}

/// Calls any function with a JSON argument; returns its result as JSON.
fn call(function: &str, json: &str) -> Result<String, Error> {
    let input: serde_json::Value = serde_json::from_str(json).map_err(|err| Error::Payload(err.to_string()))?;
    let output: serde_json::Value = native::call(function, &input)?;
    Ok(output.to_string())
}

/// A gemm whose operand is the file at `path`.
fn file_operand(path: &str) -> Result<String, Error> {
    let request = weir_guest_request(Shape { m: 1, n: 1, k: 1 }, Matrix::File { file: path.into() }, None);
    let response: serde_json::Value = native::call("gemm", &request)?;
    Ok(response.to_string())
}

/// Calls the `echo` native function `calls` times with a 16-byte payload;
/// returns the nanoseconds all calls took, measured in the guest.
/// Reports the size of input `name` as the metric `bytes`, and says it on stdout.
fn measure(name: &str) -> Result<String, Error> {
    let bytes = std::fs::read(weir_guest::input(name))?.len();
    println!("measured {bytes} bytes");
    weir_guest::metric("bytes", bytes as f64);
    Ok(bytes.to_string())
}

/// `count` metrics, progress reports and refused native calls, as fast as it can.
fn flood(count: u64) -> Result<String, Error> {
    let mut refused = 0;
    for i in 0..count {
        weir_guest::metric("i", i as f64);
        weir_guest::progress(i, count);
        refused += u64::from(native::call_raw("no-such-function", &[0; 64]).is_err());
    }
    Ok(format!("{refused} refused"))
}

fn bench_echo(calls: u64) -> Result<String, Error> {
    let payload = vec![7u8; 16];
    let started = std::time::Instant::now();
    for _ in 0..calls {
        let back = native::call_raw("echo", &payload)?;
        std::hint::black_box(back);
    }
    Ok(started.elapsed().as_nanos().to_string())
}

type GemmFn = fn(usize, usize, usize, &[f32], &[f32], bool, bool) -> Result<Vec<f32>, Error>;

/// `calls` `size`³ products through the bridge with `gemm`, one after the
/// other as a training loop makes them; returns their nanoseconds, measured
/// in the guest, including encoding and decoding.
fn bench_gemm(size: usize, calls: u64, gemm: GemmFn) -> Result<String, Error> {
    let (a, b) = bench_operands(size);
    timed(|| {
        for _ in 0..calls {
            std::hint::black_box(gemm(size, size, size, &a, &b, false, false)?);
        }
        Ok(())
    })
}

/// `calls` `size`³ products of operands uploaded once and kept by the engine
/// (on a GPU when the step holds one), each product kept there too and then
/// released, as a training loop keeps its weights; returns their nanoseconds.
/// Downloading a one-value tensor at the end waits for the device's queue,
/// so work the GPU has not finished is counted.
fn bench_gemm_kept(size: usize, calls: u64) -> Result<String, Error> {
    let (a, b) = bench_operands(size);
    let (a, b, fence) = (Tensor::upload(&a)?, Tensor::upload(&b)?, Tensor::upload(&[0.0])?);
    timed(|| {
        for _ in 0..calls {
            drop(Gemm::new(size, size, size).to_tensor(&a, &b)?);
        }
        fence.to_vec().map(drop)
    })
}

/// Square operands of `size`² values, as the bridge bench makes them.
fn bench_operands(size: usize) -> (Vec<f32>, Vec<f32>) {
    ((0..size * size).map(|i| (i % 7) as f32).collect(), (0..size * size).map(|i| (i % 5) as f32).collect())
}

/// Runs `work` and returns its nanoseconds; also reports when it started and
/// ended (ms since the Unix epoch, metrics `started_ms` and `ended_ms`), so a
/// caller can tell which steps ran at the same time.
fn timed(work: impl FnOnce() -> Result<(), Error>) -> Result<String, Error> {
    let epoch_ms = || {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |t| t.as_millis() as f64)
    };
    let (wall, started) = (epoch_ms(), std::time::Instant::now());
    work()?;
    let nanos = started.elapsed().as_nanos();
    weir_guest::metric("started_ms", wall);
    weir_guest::metric("ended_ms", epoch_ms());
    Ok(nanos.to_string())
}

/// One `size`³ product of `/in/a` and `/in/b` into `/out/c`, files only;
/// returns its nanoseconds, measured in the guest.
fn bench_gemm_files(size: usize) -> Result<String, Error> {
    let started = std::time::Instant::now();
    Gemm::new(size, size, size).to_file(Operand::File("/in/a"), Operand::File("/in/b"), "/out/c")?;
    Ok(started.elapsed().as_nanos().to_string())
}

/// The product of inputs `a` and `b` four ways through `weir:step/tensors`
/// (values; both as tensors; values times a tensor; files), written to
/// outputs `c_values`, `c_tensors`, `c_mixed` and `c_file`.
fn tensors() -> Result<String, Error> {
    #[derive(serde::Deserialize)]
    struct Product {
        m: usize,
        n: usize,
        k: usize,
        trans_a: bool,
        trans_b: bool,
    }
    let p: Product = weir_guest::params()?;
    let gemm = Gemm::new(p.m, p.n, p.k).transpose_a(p.trans_a).transpose_b(p.trans_b);
    let (a, b) = (read_matrix("a")?, read_matrix("b")?);
    let write = |name: &str, values: &[f32]| {
        std::fs::write(weir_guest::output(name), values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
    };
    write("c_values", &gemm.values(&a, &b)?)?;
    let (a_kept, b_kept) = (Tensor::upload(&a)?, Tensor::upload(&b)?);
    write("c_tensors", &gemm.to_tensor(&a_kept, &b_kept)?.to_vec()?)?;
    write("c_mixed", &gemm.values(&a, &b_kept)?)?;
    gemm.to_file(Operand::File("/in/a"), Operand::File("/in/b"), "/out/c_file")?;
    Ok("four products".into())
}

/// Makes a `size` × `size` product (of a column and a row) kept by the
/// engine, and leaves it for the engine to free when the step ends.
fn tensor_leave(size: usize) -> Result<String, Error> {
    let (column, row) = (vec![1.0f32; size], vec![2.0f32; size]);
    let product = Gemm::new(size, size, 1).to_tensor(&column[..], &row[..])?;
    Ok(format!("left tensor {} of {size} × {size}", leave(product)))
}

/// Leaves `tensor` for the engine to free when the step ends; returns its handle.
fn leave(tensor: Tensor) -> u32 {
    let handle = tensor.handle();
    std::mem::forget(tensor);
    handle
}

/// Every misuse of tensors this guest can think of, each answered with an
/// error value (never a trap); returns the errors, one per line.
fn tensor_misuse() -> Result<String, Error> {
    let foreign: u32 = std::fs::read_to_string(weir_guest::input("handle"))?
        .trim()
        .trim_start_matches("ok: ")
        .parse()
        .map_err(|_| Error::Payload("no handle in /in/handle".into()))?;
    let mut errors = Vec::new();
    let mut expect_error = |what: &str, outcome: Result<(), Error>| match outcome {
        Ok(()) => errors.push(format!("{what}: accepted")),
        Err(err) => errors.push(format!("{what}: {err}")),
    };
    let other_step = Tensor::from_handle(foreign);
    expect_error("foreign download", other_step.to_vec().map(drop));
    expect_error("foreign operand", Gemm::new(1, 1, 3).values(&[1.0, 2.0, 3.0][..], &other_step).map(drop));
    std::mem::forget(other_step);
    let released = Tensor::upload(&[1.0; 4])?;
    let handle = released.handle();
    drop(released);
    let stale = Tensor::from_handle(handle);
    expect_error("released download", stale.to_vec().map(drop));
    std::mem::forget(stale);
    expect_error("bad shape", Gemm::new(2, 2, 2).values(&[1.0; 3][..], &[1.0; 4][..]).map(drop));
    let square = Tensor::upload(&[1.0; 4])?;
    expect_error("bad tensor shape", Gemm::new(3, 3, 3).values(&square, &square).map(drop));
    expect_error("outside file", Gemm::new(1, 1, 1).values(Operand::File("/etc/passwd"), &[1.0][..]).map(drop));
    let big = vec![0.5f32; 10 << 20];
    expect_error("too big", Tensor::upload(&big).map(drop));
    Ok(errors.join("\n"))
}
