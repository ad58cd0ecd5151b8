#if !WARREN_FUZZ
    import Foundation

    /// The fixed-seed pass that `make test` runs: `warren-json-fuzz [COUNT]` checks COUNT generated inputs (20,000 by
    /// default) and crashes at the first disagreement. `warren-json-fuzz --seeds DIR` writes valid messages into DIR
    /// instead, as the starting corpus of `make fuzz`, which builds this target with libFuzzer's entry point (Fuzz.swift).
    @main
    struct FixedSeedPass {
        static func main() throws {
            if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "--seeds" {
                try writeSeeds(into: CommandLine.arguments[2])
                return
            }
            let count = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 20_000
            var maker = InputMaker(random: SeededGenerator(seed: 0x5741_5252_454E))
            var readByTheFastPath = 0
            for _ in 0..<count where Differential.check(maker.next()) { readByTheFastPath += 1 }
            print(
                "warren-json-fuzz: \(count) inputs (seed fixed), \(readByTheFastPath) read by the fast path: it agreed with Foundation on every one"
            )
        }

        static func writeSeeds(into directory: String) throws {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var maker = InputMaker(random: SeededGenerator(seed: 1), mutates: false)
            for index in 0..<64 {
                try Data(maker.next()).write(to: URL(fileURLWithPath: "\(directory)/seed-\(index).json"))
            }
        }
    }
#endif
