import Foundation

/// When a recurring job runs: every fixed interval, or at the times a cron expression names in a time zone.
///
/// Fire times are whole seconds. An interval counts from the Unix epoch (every 10 s fires at :00, :10, :20, …, in
/// every process alike), so an instance that takes over computes the same times as the one before it.
///
/// A cron schedule is evaluated in its time zone's wall clock, with the zone's daylight-saving rules:
/// - A schedule that names particular hours (`30 2 * * *`) runs once on every day, changes included. A wall time the
///   spring change skips runs when the gap ends, at the expression's first second (02:30 in Europe/Berlin on the last
///   Sunday of March runs at 03:00:00 CEST; `15 30 2 * * *` at 03:00:15); a wall time the autumn change repeats runs at its first occurrence only (02:30 CEST, not
///   again at 02:30 CET).
/// - A schedule for every hour (`0 * * * *`, `*/15 * * * *`) runs in each real hour: nothing at the skipped wall
///   times, and at both occurrences of the repeated ones.
public struct Schedule: Sendable, Hashable, CustomStringConvertible {
    enum Kind: Hashable {
        case interval(seconds: Int64)
        case cron(CronExpression, TimeZone)
    }

    let kind: Kind

    /// Every `interval`, counted from the Unix epoch.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` when `interval` is shorter than a second, not a whole
    ///   number of seconds, or longer than ten years.
    public static func every(_ interval: Duration) throws(WarrenError) -> Schedule {
        let (seconds, attoseconds) = interval.components
        guard seconds >= 1, attoseconds == 0, seconds <= 315_360_000 else {
            throw WarrenError(
                .invalidConfiguration, "a schedule's interval must be whole seconds from 1 s to ten years: \(interval)")
        }
        return Schedule(kind: .interval(seconds: seconds))
    }

    /// At the times `expression` names (see ``CronExpression``), read in the IANA time zone `timeZone`.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` with the parser's reason, or for an unknown time zone.
    public static func cron(_ expression: String, timeZone: String = "UTC") throws(WarrenError) -> Schedule {
        let parsed: CronExpression
        do {
            parsed = try CronExpression(expression)
        } catch {
            throw WarrenError(.invalidConfiguration, error.description)
        }
        guard let zone = TimeZone(identifier: timeZone) else {
            throw WarrenError(.invalidConfiguration, "unknown time zone '\(timeZone)' (use an IANA name)")
        }
        return Schedule(kind: .cron(parsed, zone))
    }

    /// The interval, for an interval schedule.
    public var interval: Duration? {
        if case .interval(let seconds) = kind { return .seconds(seconds) }
        return nil
    }

    /// The cron expression's text, for a cron schedule.
    public var cronExpression: String? {
        if case .cron(let expression, _) = kind { return expression.text }
        return nil
    }

    /// The IANA name of the time zone a cron schedule is read in (`UTC` for an interval).
    public var timeZoneIdentifier: String {
        if case .cron(_, let zone) = kind { return zone.identifier }
        return "UTC"
    }

    /// `every 10s`, or `cron 30 2 * * * Europe/Berlin`.
    public var description: String {
        switch kind {
        case .interval(let seconds): "every \(seconds)s"
        case .cron(let expression, let zone): "cron \(expression.text) \(zone.identifier)"
        }
    }

    /// The first fire time strictly after `date`, or `nil` when there is none within thirty years, and for a date
    /// that is not finite or lies more than about three million years from 1970.
    public func nextFireTime(after date: Date) -> Date? {
        let interval = date.timeIntervalSince1970
        guard interval.isFinite, abs(interval) < Self.limitSeconds else { return nil }
        let seconds = Int64(interval.rounded(.down))
        return nextFireTime(after: seconds).map { Date(timeIntervalSince1970: TimeInterval($0)) }
    }

    /// How far from 1970 a date may be (about ±3 million years): arithmetic on it cannot overflow.
    static let limitSeconds: Double = 1e14

    /// The fire times in `(after, through]`, in order, at most `limit` of them.
    public func fireTimes(after start: Date, through end: Date, limit: Int = 10_000) -> [Date] {
        var times: [Date] = []
        var current = start
        while times.count < limit, let next = nextFireTime(after: current), next <= end {
            times.append(next)
            current = next
        }
        return times
    }

    /// The first fire time strictly after `instant` (Unix seconds).
    func nextFireTime(after instant: Int64) -> Int64? {
        switch kind {
        case .interval(let interval):
            return (instant.floorDivided(by: interval) + 1) * interval
        case .cron(let expression, let zone):
            return ZonedCron(expression: expression, zone: zone).next(after: instant)
        }
    }
}

/// A cron expression read in a time zone: maps its wall-clock matches to instants across offset changes.
struct ZonedCron {
    let expression: CronExpression
    let zone: TimeZone

    func offset(at instant: Int64) -> Int64 {
        Int64(zone.secondsFromGMT(for: Date(timeIntervalSince1970: TimeInterval(instant))))
    }

    /// What a wall-clock time is in the zone.
    enum Resolution: Equatable {
        /// It happens once.
        case exact(Int64)
        /// It happens twice (an offset change set the clocks back).
        case repeated(Int64, Int64)
        /// It never happens (the clocks jumped over it); the instant the jump ended.
        case skipped(gapEnd: Int64)
    }

    func resolve(wall: Int64) -> Resolution {
        // At most one offset change lies within a day of any instant in every zone in use.
        let candidates = Set([offset(at: wall - 86_400), offset(at: wall + 86_400)])
        let instants = candidates.map { wall - $0 }.filter { offset(at: $0) == wall - $0 }.sorted()
        switch instants.count {
        case 0:
            // The earlier offset is the one before the jump: wall - later..wall - earlier spans the transition.
            let before = offset(at: wall - 86_400)
            let after = offset(at: wall + 86_400)
            var low = wall - max(before, after)  // still before the change
            var high = wall - min(before, after)  // already after it
            while high - low > 1 {
                let middle = low + (high - low) / 2
                if offset(at: middle) == before { low = middle } else { high = middle }
            }
            return .skipped(gapEnd: high)
        case 1:
            return .exact(instants[0])
        default:
            return .repeated(instants[0], instants[instants.count - 1])
        }
    }

    /// The first fire time strictly after `instant`.
    func next(after instant: Int64) -> Int64? {
        let everyHour = expression.coversEveryHour
        // Walls before this instant's own wall time can still lie ahead: when the clocks go back within a day (the
        // second occurrence of a repeated hour), and when they went forward within the last day (a skipped wall
        // time runs when the gap ends, which may be after this instant): start that much earlier.
        let backUp = max(
            0, offset(at: instant) - offset(at: instant + 86_400), offset(at: instant) - offset(at: instant - 86_400))
        var wall = instant + offset(at: instant) - backUp - 1
        var best: Int64?
        // A hard bound on candidates: a per-second expression walks at most the repeated hour and a bit.
        for _ in 0..<100_000 {
            guard let candidate = expression.nextWallTime(after: wall) else { return best }
            wall = candidate
            let resolution = resolve(wall: candidate)
            var fires: [Int64] = []
            switch resolution {
            case .exact(let at): fires = [at]
            case .repeated(let first, let second): fires = everyHour ? [first, second] : [first]
            case .skipped(let gapEnd): fires = everyHour ? [] : [gapEnd + expression.firstSecond]
            }
            for fire in fires where fire > instant {
                best = min(best ?? fire, fire)
            }
            // Walls in a repeated stretch may map to instants earlier than one already found; past it, instants grow
            // with the wall clock.
            if best != nil, !(resolution.isRepeated) { return best }
        }
        return best
    }
}

extension ZonedCron.Resolution {
    var isRepeated: Bool {
        if case .repeated = self { return true }
        return false
    }
}
