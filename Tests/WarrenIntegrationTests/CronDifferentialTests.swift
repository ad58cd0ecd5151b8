import Foundation
import Testing
import WarrenTestSupport

@testable import Warren

/// Warren's cron evaluator against Python's `croniter` (PyPI), the most used cron library: generated expressions,
/// time zones with every kind of offset change, and start times around real transitions. The next fire times agree,
/// except for the two differences docs/scheduling.md lists: a schedule for particular hours runs a repeated wall time
/// once (its first occurrence), where croniter runs it twice; and a day field written as a step of `*` (`*/3`)
/// counts as unrestricted (Vixie cron), where croniter counts it as restricted (told `day_or` here).
@Suite("Cron evaluator against croniter", .serialized)
struct CronDifferentialTests {
    static let croniterInstalled: Bool = {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import croniter"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return false }
        process.waitUntilExit()
        return process.terminationStatus == 0
    }()

    /// A fixed-seed generator, so a failure reproduces.
    struct SplitMix: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    struct Case: Codable {
        var expression: String  // Warren's form (seconds first when six fields)
        var croniter: String  // croniter's form (seconds last)
        var zone: String
        var start: Int64
        var count: Int
        /// Vixie cron's rule, which Warren follows: a day field that starts with `*` (`*/3` too) is unrestricted, so
        /// the days must match both fields; croniter counts `*/3` as restricted and matches either unless told.
        var dayOr: Bool
    }

    static func generate(count: Int) -> [Case] {
        var random = SplitMix(state: 20_261_207)
        let seconds = ["0", "30", "*/20", "15,45"]
        let minutes = ["*", "0", "30", "*/15", "5,35", "10-40/10", "59"]
        let hours = ["*", "2", "1-3", "*/6", "0,12", "2,3", "1", "3", "23", "0-4/2"]
        let days = ["*", "1", "15", "1-7", "28", "*/10"]
        let months = ["*", "3", "10", "3,10", "*/2", "1-6", "11"]
        let weekdays = ["*", "0", "1-5", "6", "0,6", "*/3"]
        let zones = [
            "Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe", "America/Santiago",
            "Pacific/Chatham", "Asia/Kolkata", "UTC", "America/Sao_Paulo", "Europe/London",
        ]
        // The offset changes of 2025–2027 in the zones below (±2 days of each), and anywhere in those years.
        let anchors: [Int64] = [
            1_741_503_600, 1_743_296_400, 1_743_861_600, 1_743_865_200, 1_743_868_800, 1_743_908_400, 1_757_217_600,
            1_758_981_600, 1_759_593_600, 1_761_440_400, 1_762_063_200, 1_772_953_200, 1_774_746_000, 1_775_311_200,
            1_775_314_800, 1_775_318_400, 1_775_358_000, 1_788_667_200, 1_790_431_200, 1_791_043_200, 1_792_890_000,
            1_793_512_800, 1_805_007_600, 1_806_195_600, 1_806_760_800, 1_806_764_400, 1_806_768_000, 1_806_807_600,
            1_820_116_800, 1_821_880_800, 1_822_492_800, 1_824_944_400, 1_825_567_200,
        ]
        var cases: [Case] = []
        for _ in 0..<count {
            let fiveFields = [
                minutes.randomElement(using: &random)!, hours.randomElement(using: &random)!,
                days.randomElement(using: &random)!, months.randomElement(using: &random)!,
                weekdays.randomElement(using: &random)!,
            ]
            let withSeconds = Int.random(in: 0..<4, using: &random) == 0
            let second = seconds.randomElement(using: &random)!
            let expression = (withSeconds ? [second] + fiveFields : fiveFields).joined(separator: " ")
            let forCroniter = (withSeconds ? fiveFields + [second] : fiveFields).joined(separator: " ")
            let near = Bool.random(using: &random)
            let start =
                near
                ? anchors.randomElement(using: &random)! + Int64.random(in: -172_800...172_800, using: &random)
                : Int64.random(in: 1_735_689_600...1_830_297_600, using: &random)
            cases.append(
                Case(
                    expression: expression, croniter: forCroniter, zone: zones.randomElement(using: &random)!,
                    start: start, count: 8, dayOr: !fiveFields[2].hasPrefix("*") && !fiveFields[4].hasPrefix("*")))
        }
        return cases
    }

    /// croniter's next fire times for each case (twice as many as asked, for the documented difference to drop).
    static func croniter(_ cases: [Case]) async throws -> [[Int64]] {
        let script = """
            import json, sys
            from datetime import datetime
            from zoneinfo import ZoneInfo
            from croniter import croniter
            out = []
            for case in json.load(sys.stdin):
                it = croniter(case["croniter"], datetime.fromtimestamp(case["start"], ZoneInfo(case["zone"])),
                              day_or=case["dayOr"])
                out.append([int(it.get_next(datetime).timestamp()) for _ in range(case["count"] * 2)])
            print(json.dumps(out))
            """
        let run = try await runProcess(
            "/usr/bin/env", ["python3", "-c", script], input: try JSONEncoder().encode(cases), timeout: .seconds(300))
        guard run.status == 0, let times = try? JSONDecoder().decode([[Int64]].self, from: Data(run.output.utf8)) else {
            throw TestFailure("croniter failed (pip install croniter): \(run)")
        }
        return times
    }

    /// Drops croniter's second occurrence of a repeated wall time for a schedule of particular hours.
    static func documentedDifference(_ times: [Int64], expression: CronExpression, zone: TimeZone) -> [Int64] {
        guard !expression.coversEveryHour else { return times }
        var seen: [Int64: Int64] = [:]  // wall time → first instant
        var kept: [Int64] = []
        for time in times {
            let wall = time + Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(time))))
            if let first = seen[wall], time - first < 86_400 { continue }
            seen[wall] = time
            kept.append(time)
        }
        return kept
    }

    @Test(.needsTool(croniterInstalled, "Python's croniter (pip install croniter)"))
    func nextFireTimesAgreeWithCroniter() async throws {
        let cases = Self.generate(count: 3000)
        let expected = try await Self.croniter(cases)
        #expect(expected.count == cases.count)
        var disagreements: [String] = []
        var transitionsCrossed = 0
        for (index, (testCase, theirs)) in zip(cases, expected).enumerated() {
            let schedule = try Schedule.cron(testCase.expression, timeZone: testCase.zone)
            guard case .cron(let expression, let zone) = schedule.kind else { continue }
            var ours: [Int64] = []
            var cursor = testCase.start
            while ours.count < testCase.count, let next = schedule.nextFireTime(after: cursor) {
                ours.append(next)
                cursor = next
            }
            let filtered = Array(
                Self.documentedDifference(theirs, expression: expression, zone: zone).prefix(testCase.count))
            let offsets = Set(
                ([testCase.start] + ours).map {
                    zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval($0)))
                })
            if offsets.count > 1 { transitionsCrossed += 1 }
            if ours != filtered {
                disagreements.append(
                    "#\(index) '\(testCase.expression)' \(testCase.zone) after \(testCase.start): ours \(ours), croniter \(filtered)"
                )
            }
        }
        #expect(
            disagreements.isEmpty,
            "\(disagreements.count) of \(cases.count):\n\(disagreements.prefix(15).joined(separator: "\n"))")
        // The generator does reach offset changes (otherwise this test proves little about them).
        #expect(transitionsCrossed > 300, "only \(transitionsCrossed) cases crossed an offset change")
    }
}
