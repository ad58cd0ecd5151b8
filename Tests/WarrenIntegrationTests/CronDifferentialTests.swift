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
        // Mostly start times in the day before one of the zone's own offset changes (2025–2027), else anywhere in those
        // years.
        func transitions(of zone: String) -> [Int64] {
            guard let timeZone = TimeZone(identifier: zone) else { return [] }
            var found: [Int64] = []
            var date = Date(timeIntervalSince1970: 1_735_689_600)
            while let next = timeZone.nextDaylightSavingTimeTransition(after: date),
                next.timeIntervalSince1970 < 1_830_297_600
            {
                found.append(Int64(next.timeIntervalSince1970))
                date = next
            }
            return found
        }
        let changes = Dictionary(uniqueKeysWithValues: zones.map { ($0, transitions(of: $0)) })
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
            let zone = zones.randomElement(using: &random)!
            let start: Int64
            if Int.random(in: 0..<4, using: &random) > 0, let change = changes[zone]?.randomElement(using: &random) {
                start = change + Int64.random(in: -86_400...3_600, using: &random)
            } else {
                start = Int64.random(in: 1_735_689_600...1_830_297_600, using: &random)
            }
            cases.append(
                Case(
                    expression: expression, croniter: forCroniter, zone: zone,
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

    /// Drops croniter's runs at the second occurrence of a repeated wall time, for a schedule of particular hours.
    static func documentedDifference(_ times: [Int64], expression: CronExpression, zone: TimeZone) -> [Int64] {
        guard !expression.coversEveryHour else { return times }
        let zoned = ZonedCron(expression: expression, zone: zone)
        return times.filter { time in
            let wall = time + zoned.offset(at: time)
            if case .repeated(_, let second) = zoned.resolve(wall: wall), second == time { return false }
            return true
        }
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
            // Cases where the evaluator met a wall time the zone skips or repeats between the start and its last fire.
            let zoned = ZonedCron(expression: expression, zone: zone)
            var wall =
                testCase.start
                + Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(testCase.start))))
            let last = ours.last ?? testCase.start
            let end = last + Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(last)))) + 3600
            var metAChange = false
            while !metAChange, let candidate = expression.nextWallTime(after: wall), candidate <= end {
                wall = candidate
                if case .exact = zoned.resolve(wall: candidate) {} else { metAChange = true }
            }
            if metAChange { transitionsCrossed += 1 }
            if ours != filtered {
                disagreements.append(
                    "#\(index) '\(testCase.expression)' \(testCase.zone) after \(testCase.start): ours \(ours), croniter \(filtered)"
                )
            }
        }
        #expect(
            disagreements.isEmpty,
            "\(disagreements.count) of \(cases.count):\n\(disagreements.prefix(15).joined(separator: "\n"))")
        // The generator does reach skipped and repeated wall times (otherwise this test proves little about them).
        #expect(transitionsCrossed > 100, "only \(transitionsCrossed) cases met a skipped or repeated wall time")
    }
}
