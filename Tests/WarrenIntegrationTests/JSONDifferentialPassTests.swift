import Testing

@Suite("JSON fast path: the differential pass with a fixed seed (make fuzz runs it under libFuzzer)")
struct JSONDifferentialPassTests {
    @Test func twentyThousandGeneratedInputsReadAsFoundationReadsThem() async throws {
        let run = try await HostAndCLITests.run("warren-json-fuzz", ["20000"], url: nil)
        #expect(run.status == 0, "a disagreement: \(run.errors.suffix(2000))")
        let line = try #require(run.output.split(separator: "\n").last)
        #expect(line.contains("20000 inputs"))
        // The pass must reach the fast path, not only its ways of giving up.
        let read =
            line.split(separator: " ").firstIndex(of: "read").flatMap { Int(line.split(separator: " ")[$0 - 1]) } ?? 0
        #expect(read > 2_000, "\(line)")
    }
}
