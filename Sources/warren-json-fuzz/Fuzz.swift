#if WARREN_FUZZ
    /// libFuzzer's entry point, compiled only into `make fuzz`'s build (`-DWARREN_FUZZ`, `-sanitize=fuzzer`).
    @_cdecl("LLVMFuzzerTestOneInput")
    public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
        Differential.check(Array(UnsafeBufferPointer(start: data, count: size)))
        return 0
    }
#endif
