/// A cron expression: five fields (minute, hour, day of month, month, day of week) or six with seconds first
/// (`second minute hour day-of-month month day-of-week`), as Spring and Quartz write them.
///
/// Each field takes `*`, a value, a range `a-b`, a step `*/n`, `a/n` or `a-b/n`, and comma-separated lists of those.
/// Months take `JAN`–`DEC`, days of the week `SUN`–`SAT` (0 and 7 are both Sunday). Like Vixie cron (and `croniter`),
/// when both the day of month and the day of week are restricted (neither starts with `*`), a day matches if either
/// does; otherwise both must. The macros `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`) and
/// `@hourly` stand for their usual five fields. `L`, `W`, `#` and `?` are not supported: parsing them throws.
///
/// The expression only matches wall-clock times; ``Schedule`` evaluates it in a time zone, where daylight-saving
/// changes decide what happens to a time that is skipped or repeated.
public struct CronExpression: Sendable, Hashable, CustomStringConvertible {
    /// The text it was parsed from, trimmed.
    public let text: String
    let seconds: UInt64
    let minutes: UInt64
    let hours: UInt32
    let daysOfMonth: UInt32
    let months: UInt16
    let daysOfWeek: UInt8
    /// Whether the day-of-month and day-of-week fields begin with `*` (Vixie cron's rule for combining them).
    let dayOfMonthStarred: Bool
    let dayOfWeekStarred: Bool

    /// Whether the expression names a second (six fields); five-field expressions fire at second 0.
    public let hasSeconds: Bool

    public var description: String { text }

    /// The first second of a minute the expression names (0 for five fields).
    var firstSecond: Int64 { Int64(seconds.trailingZeroBitCount) }

    /// Every hour of the day matches: such a schedule runs in each real hour across daylight-saving changes (a skipped
    /// wall time is not run, a repeated one runs twice). A schedule for particular hours runs once a day instead.
    var coversEveryHour: Bool { hours == (1 << 24) - 1 }

    /// Why a cron expression was refused: `position` is the 1-based field (0 for the whole expression).
    public struct ParseError: Error, Sendable, Hashable, CustomStringConvertible {
        public var expression: String
        public var field: Int
        public var reason: String
        public var description: String {
            field == 0
                ? "invalid cron expression '\(expression)': \(reason)"
                : "invalid cron expression '\(expression)', field \(field): \(reason)"
        }
    }

    /// Parses `text`.
    /// - Throws: ``ParseError`` naming the field and the reason (an unknown name, a value out of range, a step of 0,
    ///   a wrong number of fields, a day that never exists such as `30 FEB`).
    public init(_ text: String) throws(ParseError) {
        let trimmed = text.trimmingWhitespace()
        self.text = trimmed
        let expanded: String
        switch trimmed.lowercased() {
        case "@yearly", "@annually": expanded = "0 0 1 1 *"
        case "@monthly": expanded = "0 0 1 * *"
        case "@weekly": expanded = "0 0 * * 0"
        case "@daily", "@midnight": expanded = "0 0 * * *"
        case "@hourly": expanded = "0 * * * *"
        default:
            if trimmed.hasPrefix("@") {
                throw ParseError(expression: trimmed, field: 0, reason: "unknown macro '\(trimmed)'")
            }
            expanded = trimmed
        }
        var fields = expanded.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 || fields.count == 6 else {
            throw ParseError(
                expression: trimmed, field: 0, reason: "expected 5 or 6 fields, found \(fields.count)")
        }
        let offset = fields.count == 6 ? 1 : 0
        hasSeconds = offset == 1
        if fields.count == 5 { fields.insert("0", at: 0) }
        func parse(_ index: Int, _ range: ClosedRange<Int>, names: [String] = []) throws(ParseError) -> UInt64 {
            do {
                return try CronField.parse(fields[index], range: range, names: names)
            } catch {
                throw ParseError(expression: trimmed, field: index + 1 - (1 - offset), reason: error.reason)
            }
        }
        seconds = try parse(0, 0...59)
        minutes = try parse(1, 0...59)
        hours = UInt32(try parse(2, 0...23))
        daysOfMonth = UInt32(try parse(3, 1...31))
        months = UInt16(try parse(4, 1...12, names: CronField.monthNames))
        var weekdays = try parse(5, 0...7, names: CronField.weekdayNames)
        if weekdays & (1 << 7) != 0 { weekdays = (weekdays | 1) & ~(1 << 7) }
        daysOfWeek = UInt8(weekdays)
        dayOfMonthStarred = fields[3].hasPrefix("*")
        dayOfWeekStarred = fields[5].hasPrefix("*")
        // With the day of week unrestricted, a day of month that no month in the set has can never match.
        if dayOfWeekStarred, !Self.someMonthHasADay(daysOfMonth, months: months) {
            throw ParseError(
                expression: trimmed, field: 3 + offset, reason: "no month in the expression has such a day")
        }
    }

    /// Whether one of `months` is long enough for one of `days` (February counted with 29 days).
    private static func someMonthHasADay(_ days: UInt32, months: UInt16) -> Bool {
        let lengths = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
        for month in 1...12 where months & (1 << month) != 0 {
            let fitting = UInt32((1 << (lengths[month - 1] + 1)) - 2)
            if days & fitting != 0 { return true }
        }
        return false
    }

    /// Whether the civil day matches the month and day fields.
    func matches(day: CivilDate) -> Bool {
        guard months & (1 << day.month) != 0 else { return false }
        let byMonthDay = daysOfMonth & (1 << day.day) != 0
        let byWeekday = daysOfWeek & (1 << day.weekday) != 0
        if dayOfMonthStarred || dayOfWeekStarred { return byMonthDay && byWeekday }
        return byMonthDay || byWeekday
    }

    /// The first second of the day at or after `secondOfDay` that matches the time fields, or `nil`.
    func firstTime(inDayFrom secondOfDay: Int) -> Int? {
        var hour = secondOfDay / 3600
        var minute = (secondOfDay % 3600) / 60
        var second = secondOfDay % 60
        while hour < 24 {
            if hours & (1 << hour) != 0 {
                while minute < 60 {
                    if minutes & (1 << minute) != 0, let found = Self.firstBit(seconds, from: second, below: 60) {
                        return hour * 3600 + minute * 60 + found
                    }
                    minute += 1
                    second = 0
                }
            }
            hour += 1
            minute = 0
            second = 0
        }
        return nil
    }

    private static func firstBit(_ set: UInt64, from start: Int, below limit: Int) -> Int? {
        guard start < limit else { return nil }
        let remaining = set >> start
        guard remaining != 0 else { return nil }
        let found = start + remaining.trailingZeroBitCount
        return found < limit ? found : nil
    }

    /// The first wall-clock time strictly after `wall` (seconds since 1970-01-01T00:00 of the local calendar) that
    /// the expression matches, searching at most `years` ahead; `nil` when none (e.g. 29 February on a Monday, far).
    func nextWallTime(after wall: Int64, years: Int = 30) -> Int64? {
        let start = wall + 1
        var day = start.floorDivided(by: 86_400)
        var secondOfDay = Int(start - day * 86_400)
        for _ in 0..<(years * 366) {
            if matches(day: CivilDate(daysSinceEpoch: day)), let time = firstTime(inDayFrom: secondOfDay) {
                return day * 86_400 + Int64(time)
            }
            day += 1
            secondOfDay = 0
        }
        return nil
    }
}

/// Parses one cron field into a bit set (bit n set when value n matches).
enum CronField {
    static let monthNames = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    static let weekdayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]

    struct Failure: Error {
        var reason: String
    }

    static func parse(_ field: String, range: ClosedRange<Int>, names: [String]) throws(Failure) -> UInt64 {
        guard !field.isEmpty, field.utf8.count <= 200 else { throw Failure(reason: "empty or too long") }
        var set: UInt64 = 0
        for part in field.split(separator: ",", omittingEmptySubsequences: false) {
            guard !part.isEmpty else { throw Failure(reason: "empty list item in '\(field)'") }
            let pieces = part.split(separator: "/", omittingEmptySubsequences: false)
            guard pieces.count <= 2 else { throw Failure(reason: "more than one '/' in '\(part)'") }
            var step = 1
            if pieces.count == 2 {
                guard pieces[1].utf8.count <= 4, pieces[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
                    let parsed = Int(pieces[1]), parsed > 0, parsed <= range.upperBound + 1
                else {
                    throw Failure(reason: "step '\(pieces[1])' must be a number from 1 to \(range.upperBound + 1)")
                }
                step = parsed
            }
            let base = pieces[0]
            let low: Int
            let high: Int
            if base == "*" {
                low = range.lowerBound
                high = range.upperBound
            } else if let dash = base.firstIndex(of: "-") {
                low = try value(base[..<dash], range: range, names: names)
                high = try value(base[base.index(after: dash)...], range: range, names: names)
                guard low <= high else { throw Failure(reason: "range '\(base)' runs backwards") }
            } else {
                low = try value(base, range: range, names: names)
                // `a/n` means from a to the end of the range, every n (Vixie cron, croniter).
                high = pieces.count == 2 ? range.upperBound : low
            }
            var current = low
            while current <= high {
                set |= 1 << current
                current += step
            }
        }
        return set
    }

    private static func value(_ text: Substring, range: ClosedRange<Int>, names: [String]) throws(Failure) -> Int {
        if !text.isEmpty, text.utf8.count <= 4, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }),
            let number = Int(text)
        {
            guard range.contains(number) else {
                throw Failure(reason: "\(number) is out of range \(range.lowerBound)-\(range.upperBound)")
            }
            return number
        }
        if let index = names.firstIndex(of: text.lowercased()) {
            return names.count == 12 ? index + 1 : index
        }
        throw Failure(reason: "'\(text)' is not a number\(names.isEmpty ? "" : " or a name")")
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self)
        while let first = scalars.first, first.isWhitespace { scalars.removeFirst() }
        while let last = scalars.last, last.isWhitespace { scalars.removeLast() }
        return String(scalars)
    }
}

extension Int64 {
    /// Division rounding towards negative infinity.
    func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}

/// A day of the proleptic Gregorian calendar, without a time zone.
struct CivilDate: Hashable {
    var year: Int
    var month: Int
    var day: Int
    /// 0 for Sunday through 6 for Saturday.
    var weekday: Int

    /// From days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    init(daysSinceEpoch days: Int64) {
        let shifted = days + 719_468
        let era = shifted.floorDivided(by: 146_097)
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
        month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
        year = Int(yearOfEra + era * 400 + (month <= 2 ? 1 : 0))
        weekday = Int((days + 4) - (days + 4).floorDivided(by: 7) * 7)
    }
}
