import Foundation
import Testing

@testable import Warren

/// Parses an ISO 8601 date with an offset (`2026-03-29T03:00:00+02:00`).
private func at(_ text: String) -> Date {
    guard let date = try? Date(text, strategy: .iso8601) else { fatalError("bad date in a test: \(text)") }
    return date
}

/// `count` fire times after `start`, each as ISO 8601 in `zone` (`2026-03-29T03:00:00+02:00`).
private func fires(_ schedule: Schedule, after start: String, count: Int, zone: String) -> [String] {
    var out: [String] = []
    var current = at(start)
    let style = Date.ISO8601FormatStyle(timeZoneSeparator: .colon, timeZone: TimeZone(identifier: zone)!)
    for _ in 0..<count {
        guard let next = schedule.nextFireTime(after: current) else { break }
        out.append(next.formatted(style))
        current = next
    }
    return out
}

@Suite("Cron expressions and schedules")
struct ScheduleTests {
    @Test func fiveAndSixFieldExpressionsMacrosAndNames() throws {
        let everyTenSeconds = try Schedule.cron("*/10 * * * * *")
        #expect(
            fires(everyTenSeconds, after: "2026-12-07T14:00:05Z", count: 3, zone: "UTC") == [
                "2026-12-07T14:00:10Z", "2026-12-07T14:00:20Z", "2026-12-07T14:00:30Z",
            ])
        let weekdays = try Schedule.cron("30 9 * JAN-MAR MON-FRI")
        #expect(
            fires(weekdays, after: "2027-01-01T12:00:00Z", count: 3, zone: "UTC") == [
                "2027-01-04T09:30:00Z", "2027-01-05T09:30:00Z", "2027-01-06T09:30:00Z",
            ])
        #expect(
            fires(try .cron("@monthly"), after: "2026-12-07T00:00:00Z", count: 2, zone: "UTC") == [
                "2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z",
            ])
        // Sunday as 7, and a day of month OR a day of week when both are restricted (Vixie cron).
        #expect(
            fires(try .cron("0 0 13 * 7"), after: "2026-12-01T00:00:00Z", count: 3, zone: "UTC") == [
                "2026-12-06T00:00:00Z", "2026-12-13T00:00:00Z", "2026-12-20T00:00:00Z",
            ])
        // 29 February: leap years only.
        #expect(
            fires(try .cron("0 12 29 2 *"), after: "2026-01-01T00:00:00Z", count: 2, zone: "UTC") == [
                "2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z",
            ])
        #expect(try CronExpression("*/5 * * * * *").hasSeconds)
        #expect(try !CronExpression("*/5 * * * *").hasSeconds)
    }

    /// Refused expressions: each with the field it names. None traps.
    @Test(arguments: [
        ("", 0), ("* * * *", 0), ("* * * * * * *", 0), ("60 * * * *", 1), ("* 24 * * *", 2), ("* * 0 * *", 3),
        ("* * 32 * *", 3), ("* * * 13 *", 4), ("* * * * 8", 5), ("*/0 * * * *", 1), ("5-1 * * * *", 1),
        ("a * * * *", 1), ("* * * FOO *", 4), ("1,,2 * * * *", 1), ("1/2/3 * * * *", 1), ("0 0 30 2 *", 3),
        ("0 0 31 4,6,9,11 *", 3), ("@reboot", 0), ("* * * * * L", 6), ("99999999999999999999 * * * *", 1),
        ("-1 * * * *", 1), ("*/99999999999999999999 * * * *", 1), ("? * * * *", 1), ("1-2-3 * * * *", 1),
        ("+5 * * * *", 1), ("*/+2 * * * *", 1), ("0x1 * * * *", 1), ("\u{0661} * * * *", 1),
    ])
    func hostileExpressionsAreRefusedWithTheirField(text: String, field: Int) {
        do {
            _ = try CronExpression(text)
            Issue.record("'\(text)' was accepted")
        } catch {
            #expect(error.field == field, "\(text): \(error)")
        }
    }

    @Test func unknownTimeZonesAndBadIntervalsAreRefused() {
        #expect(throws: WarrenError.self) { try Schedule.cron("0 * * * *", timeZone: "Mars/Olympus") }
        #expect(throws: WarrenError.self) { try Schedule.every(.milliseconds(1500)) }
        #expect(throws: WarrenError.self) { try Schedule.every(.zero) }
        #expect(throws: WarrenError.self) { try Schedule.every(.seconds(-5)) }
        #expect(throws: WarrenError.self) { try Schedule.every(.seconds(315_360_001)) }
    }

    @Test func intervalsCountFromTheEpochInEveryProcess() throws {
        let schedule = try Schedule.every(.seconds(10))
        #expect(schedule.nextFireTime(after: at("2026-12-07T14:00:03Z")) == at("2026-12-07T14:00:10Z"))
        #expect(schedule.nextFireTime(after: at("2026-12-07T14:00:10Z")) == at("2026-12-07T14:00:20Z"))
        // Before the epoch too (floor division).
        #expect(schedule.nextFireTime(after: at("1969-12-31T23:59:55Z")) == at("1970-01-01T00:00:00Z"))
    }

    // MARK: Daylight saving time, over real transitions

    /// Europe/Berlin: 2026-03-29 02:00 CET → 03:00 CEST; 2026-10-25 03:00 CEST → 02:00 CET.
    @Test func aDailyRunInTheSkippedHourRunsOnceAtTheEndOfTheGap() throws {
        let daily = try Schedule.cron("30 2 * * *", timeZone: "Europe/Berlin")
        #expect(
            fires(daily, after: "2026-03-27T12:00:00+01:00", count: 4, zone: "Europe/Berlin") == [
                "2026-03-28T02:30:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00",
            ])
    }

    @Test func aRunSubstitutedForTheSkippedHourIsFoundFromInsideAndJustAfterTheGap() throws {
        let withSeconds = try Schedule.cron("15 30 2 * * *", timeZone: "Europe/Berlin")
        #expect(
            fires(withSeconds, after: "2026-03-29T01:59:00+01:00", count: 2, zone: "Europe/Berlin") == [
                "2026-03-29T03:00:15+02:00", "2026-03-30T02:30:15+02:00",
            ])
        // Asked at 03:00:05, after the gap ended but before the substitute's second.
        #expect(
            fires(withSeconds, after: "2026-03-29T03:00:05+02:00", count: 1, zone: "Europe/Berlin") == [
                "2026-03-29T03:00:15+02:00"
            ])
        // Several wall times in the gap make one run.
        let everyTwenty = try Schedule.cron("*/20 2 * * *", timeZone: "Europe/Berlin")
        #expect(
            fires(everyTwenty, after: "2026-03-29T01:00:00+01:00", count: 2, zone: "Europe/Berlin") == [
                "2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00",
            ])
    }

    @Test func datesNoScheduleCanAnswerGiveNilNotATrap() throws {
        for schedule in [try Schedule.every(.seconds(7)), try Schedule.cron("* * * * * *", timeZone: "Europe/Berlin")] {
            for seconds in [Double.nan, .infinity, -.infinity, 1e300, -1e300, 1e15] {
                #expect(schedule.nextFireTime(after: Date(timeIntervalSince1970: seconds)) == nil, "\(seconds)")
            }
            #expect(schedule.nextFireTime(after: .distantFuture) != nil)
            #expect(schedule.nextFireTime(after: .distantPast) != nil)
        }
    }

    @Test func aDailyRunInTheRepeatedHourRunsOnceAtItsFirstOccurrence() throws {
        let daily = try Schedule.cron("30 2 * * *", timeZone: "Europe/Berlin")
        #expect(
            fires(daily, after: "2026-10-24T12:00:00+02:00", count: 3, zone: "Europe/Berlin") == [
                "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00",
            ])
        // Asked from inside the second occurrence: it already ran in the first, the next is tomorrow's.
        #expect(
            fires(daily, after: "2026-10-25T02:10:00+01:00", count: 1, zone: "Europe/Berlin") == [
                "2026-10-26T02:30:00+01:00"
            ])
    }

    @Test func anHourlyRunRunsInEachRealHour() throws {
        let hourly = try Schedule.cron("0 * * * *", timeZone: "Europe/Berlin")
        // Spring: 01:00 CET, then 03:00 CEST (02:00 does not exist): one hour apart in real time.
        let spring = fires(hourly, after: "2026-03-29T00:30:00+01:00", count: 3, zone: "Europe/Berlin")
        #expect(spring == ["2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"])
        // Autumn: 02:00 CEST and 02:00 CET both run.
        let autumn = fires(hourly, after: "2026-10-25T00:30:00+02:00", count: 4, zone: "Europe/Berlin")
        #expect(
            autumn == [
                "2026-10-25T01:00:00+02:00", "2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00",
                "2026-10-25T03:00:00+01:00",
            ])
        // Every fire is a whole real hour after the one before, across both changes.
        for (start, zone) in [("2026-03-28T20:00:00Z", "Europe/Berlin"), ("2026-10-24T20:00:00Z", "Europe/Berlin")] {
            let times = hourly.fireTimes(after: at(start), through: at(start).addingTimeInterval(12 * 3600))
            #expect(times.count == 12, "\(zone) from \(start)")
            for (earlier, later) in zip(times, times.dropFirst()) {
                #expect(later.timeIntervalSince(earlier) == 3600)
            }
        }
    }

    @Test func asking15MinutesIntoTheFirstOccurrenceFindsTheSecondOccurrencesFirstQuarter() throws {
        let quarterly = try Schedule.cron("*/15 * * * *", timeZone: "Europe/Berlin")
        #expect(
            fires(quarterly, after: "2026-10-25T02:50:00+02:00", count: 3, zone: "Europe/Berlin") == [
                "2026-10-25T02:00:00+01:00", "2026-10-25T02:15:00+01:00", "2026-10-25T02:30:00+01:00",
            ])
        #expect(
            fires(quarterly, after: "2026-10-25T02:40:00+02:00", count: 2, zone: "Europe/Berlin") == [
                "2026-10-25T02:45:00+02:00", "2026-10-25T02:00:00+01:00",
            ])
    }

    /// Other zones and rules: the southern hemisphere, a 30-minute change, a zone without DST, and New York.
    @Test func otherZonesTransitions() throws {
        // Australia/Lord_Howe: 2026-10-04 02:00 → 02:30 (+10:30 → +11:00).
        let lordHowe = try Schedule.cron("15 2 * * *", timeZone: "Australia/Lord_Howe")
        #expect(
            fires(lordHowe, after: "2026-10-03T12:00:00+10:30", count: 2, zone: "Australia/Lord_Howe") == [
                "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00",
            ])
        // America/New_York: 2026-11-01 02:00 EDT → 01:00 EST; a daily 01:30 runs at the EDT one only.
        let newYork = try Schedule.cron("30 1 * * *", timeZone: "America/New_York")
        #expect(
            fires(newYork, after: "2026-10-31T12:00:00-04:00", count: 2, zone: "America/New_York") == [
                "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00",
            ])
        let tokyo = try Schedule.cron("0 9 * * *", timeZone: "Asia/Tokyo")
        #expect(fires(tokyo, after: "2026-12-07T00:00:00Z", count: 1, zone: "UTC") == ["2026-12-08T00:00:00Z"])
    }

    // MARK: Missed ticks

    @Test func missedTicksFollowThePolicyAndOnTimeTicksAlwaysRun() throws {
        let start: Int64 = 1_800_000_000  // a multiple of 10
        func job(_ policy: MissedTickPolicy) throws -> RecurringJob {
            try RecurringJob(
                "j", schedule: .every(.seconds(10)), queue: "q", missedTicks: policy, misfireThreshold: .seconds(15)
            ) { _ in CleanupRun() }
        }
        // 100 s down: ticks at +10 … +100; those at +90 and +100 are within 15 s of now (+100): on time.
        let now = start + 100
        let skip = try job(.skip).dueTicks(after: start, now: now)
        #expect(skip.runs == [start + 90, start + 100])
        #expect(skip.missed == 8)
        #expect(skip.latest == start + 100)
        let once = try job(.runOnce).dueTicks(after: start, now: now)
        #expect(once.runs == [start + 80, start + 90, start + 100])
        #expect(once.missed == 7)
        let all = try job(.runAll(limit: 3)).dueTicks(after: start, now: now)
        #expect(all.runs == [start + 60, start + 70, start + 80, start + 90, start + 100])
        #expect(all.missed == 5)
        let none = try job(.runAll).dueTicks(after: start, now: start + 9)
        #expect(none.runs.isEmpty && none.latest == nil && none.missed == 0)
        // A very long outage of a per-second schedule is walked in bounded time.
        let perSecond = try RecurringJob("p", schedule: .every(.seconds(1)), queue: "q", missedTicks: .runOnce) { _ in
            CleanupRun()
        }
        let long = perSecond.dueTicks(after: start, now: start + 50_000_000)
        #expect(long.latest == start + 50_000_000)
        #expect(long.runs.count == 62)  // the one missed run, then the 61 ticks within the minute's threshold
        #expect(long.missed == 50_000_000 - 62)
        // A per-second cron schedule down for two years: the policy's most recent missed ticks, then those on time.
        let cron = try RecurringJob(
            "c", schedule: .cron("* * * * * *"), queue: "q", missedTicks: .runAll(limit: 3),
            misfireThreshold: .seconds(15)
        ) { _ in CleanupRun() }
        let end = start + 63_072_000
        let twoYears = cron.dueTicks(after: start, now: end)
        let missedKept: [Int64] = [end - 18, end - 17, end - 16]
        let onTime: [Int64] = (0...15).reversed().map { end - Int64($0) }
        #expect(twoYears.runs == missedKept + onTime)
        #expect(twoYears.latest == end)
    }

    @Test func runMessageIdsComeFromTheScheduleAndTheTime() {
        #expect(
            RecurringJob.messageID(name: "cleanup", scheduledFor: at("2026-12-07T14:00:10Z"))
                == "cleanup@2026-12-07T14:00:10Z")
    }

    @Test func scheduledRunHeadersAreReadDefensively() {
        #expect(ScheduledRun(headers: [:]) == nil)
        #expect(ScheduledRun(headers: [ScheduleHeader.schedule: .string("x")]) == nil)
        #expect(
            ScheduledRun(headers: [ScheduleHeader.schedule: .int32(4), ScheduleHeader.scheduledFor: .int64(1)]) == nil)
        #expect(
            ScheduledRun(headers: [ScheduleHeader.schedule: .string("x"), ScheduleHeader.scheduledFor: .string("1")])
                == nil)
        for absurd: Int64 in [-1, .min, .max, 253_402_300_800_000] {
            #expect(
                ScheduledRun(headers: [
                    ScheduleHeader.schedule: .string("x"), ScheduleHeader.scheduledFor: .int64(absurd),
                ])
                    == nil)
        }
        let run = ScheduledRun(headers: [
            ScheduleHeader.schedule: .string("cleanup"), ScheduleHeader.scheduledFor: .int64(1_800_000_000_000),
        ])
        #expect(run?.name == "cleanup")
        #expect(run?.scheduledFor == Date(timeIntervalSince1970: 1_800_000_000))
        #expect(run?.isManual == false)
    }

    /// Civil-date arithmetic against Foundation's Gregorian calendar, over 900 years of days (from 1614: before its
    /// switch to the Julian calendar in 1582, Foundation's calendar is not proleptic).
    @Test func civilDatesAgreeWithFoundation() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        for day in stride(from: Int64(-130_000), through: 200_000, by: 37) {
            let civil = CivilDate(daysSinceEpoch: day)
            let parts = calendar.dateComponents(
                [.year, .month, .day, .weekday], from: Date(timeIntervalSince1970: TimeInterval(day * 86_400)))
            let ours: [Int] = [civil.year, civil.month, civil.day, civil.weekday + 1]
            let foundation: [Int?] = [parts.year, parts.month, parts.day, parts.weekday]
            #expect(ours.map(Optional.some) == foundation, "day \(day)")
        }
    }
}

private struct CleanupRun: WarrenMessage {
    static let messageType = "test.ping"
}
