fn main() {
    let sb = std::env::args().nth(1).is_some();
    let mut v = Vec::new();
    for _ in 0..40 {
        let t = std::time::Instant::now();
        let mut b = procpool::Pool::builder().processes(2);
        if sb {
            b = b.sandbox(procpool::Sandbox::strict());
        }
        let pool = b.build().unwrap();
        v.push(t.elapsed().as_micros());
        drop(pool);
    }
    v.sort();
    eprintln!("sandbox={sb} median {}us p10 {}us", v[20], v[4]);
}
