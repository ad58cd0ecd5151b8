import Foundation

/// Slows down guessing of passwords and tokens, per client and per user name, with a delay that grows with the
/// failures rather than a lock-out.
///
/// A client (an address, see ``ClientAddress``) may fail ``Policy/freeFailures`` times within ``Policy/window``; after
/// that each attempt waits ``Policy/firstDelay``, then twice as long after every further failure, at most
/// ``Policy/window``. A user name accrues failures the same way from every client, but its delay applies only to
/// clients that have failed recently themselves: a correct password from a client without recent failures is checked
/// at once, so failures from elsewhere cannot lock a user out.
///
/// An attempt is counted *before* it is checked (``reserve(client:name:)``) and taken back when it succeeds, so that
/// concurrent attempts cannot all pass a check of the count and only then be counted.
actor GuessThrottle {
    struct Policy: Sendable {
        /// Failures a client (or a name) may have within ``window`` before attempts wait.
        var freeFailures = 5
        var firstDelay = Duration.seconds(1)
        /// Failures older than this are forgotten; also the longest delay.
        var window = Duration.seconds(15 * 60)
        /// Clients and names remembered at most; past it the oldest half is forgotten.
        var maximumEntries = 100_000
    }

    private struct Failures {
        var count: Int
        var last: ContinuousClock.Instant
    }

    let policy: Policy
    private var byClient: [String: Failures] = [:]
    private var byName: [String: Failures] = [:]
    private let clock = ContinuousClock()

    init(_ policy: Policy = Policy()) {
        self.policy = policy
    }

    /// Counts an attempt of `client` (for `name`, when the attempt names a user) as a failure until
    /// ``succeeded(client:name:)`` takes it back.
    /// - Returns: `nil` when the attempt may be checked now; otherwise how long the client must wait (and the attempt
    ///   is not counted).
    func reserve(client: String, name: String? = nil) -> Duration? {
        let now = clock.now
        let clientFailures = current(byClient[client], now: now)
        var wait = delay(after: clientFailures, now: now)
        if clientFailures != nil, let name {
            wait = max(wait ?? .zero, delay(after: current(byName[name], now: now), now: now) ?? .zero)
        }
        if let wait, wait > .zero { return wait }
        countFailure(of: client, in: &byClient, now: now)
        if let name { countFailure(of: name, in: &byName, now: now) }
        return nil
    }

    /// Takes back an attempt ``reserve(client:name:)`` counted that was not checked after all.
    func release(client: String, name: String? = nil) {
        func takeBack(_ failures: inout [String: Failures], _ key: String) {
            guard var entry = failures[key] else { return }
            entry.count -= 1
            failures[key] = entry.count > 0 ? entry : nil
        }
        takeBack(&byClient, client)
        if let name { takeBack(&byName, name) }
    }

    /// Checks a bearer token for `client` in one step, so that concurrent wrong tokens cannot all pass a check of the
    /// count before any is counted: `.wait` while the client must wait (the token is not looked at), otherwise the
    /// identity the token stands for, or `.refused` (and the failure counted).
    func checkToken(_ token: String, client: String, access: DashboardAccess) -> TokenCheck {
        let now = clock.now
        if let wait = delay(after: current(byClient[client], now: now), now: now) { return .wait(wait) }
        if let identity = access.identity(forToken: token) { return .accepted(identity) }
        countFailure(of: client, in: &byClient, now: now)
        return .refused
    }

    enum TokenCheck: Equatable {
        case accepted(DashboardIdentity)
        case refused
        case wait(Duration)
    }

    /// Takes back the attempt ``reserve(client:name:)`` counted, once it succeeded. The client's other failures stay:
    /// signing in as oneself must not buy fresh guesses at someone else's password.
    func succeeded(client: String, name: String? = nil) {
        release(client: client, name: name)
    }

    /// One more failure of `key` now (its earlier ones forgotten when older than the window).
    private func countFailure(of key: String, in failures: inout [String: Failures], now: ContinuousClock.Instant) {
        if failures.count >= policy.maximumEntries { failures = forgetOldest(failures) }
        failures[key] = Failures(count: (current(failures[key], now: now)?.count ?? 0) + 1, last: now)
    }

    /// `failures` unless they are older than the window.
    private func current(_ failures: Failures?, now: ContinuousClock.Instant) -> Failures? {
        guard let failures, now - failures.last < policy.window else { return nil }
        return failures
    }

    /// How long after now the next attempt must wait, given `failures`; `nil` when it need not.
    private func delay(after failures: Failures?, now: ContinuousClock.Instant) -> Duration? {
        guard let failures, failures.count >= policy.freeFailures else { return nil }
        let doublings = min(failures.count - policy.freeFailures, 20)
        let delay = min(policy.firstDelay * (1 << doublings), policy.window)
        let wait = failures.last + delay - now
        return wait > .zero ? wait : nil
    }

    private func forgetOldest(_ entries: [String: Failures]) -> [String: Failures] {
        let kept = entries.sorted { $0.value.last > $1.value.last }.prefix(policy.maximumEntries / 2)
        return Dictionary(uniqueKeysWithValues: kept.map { ($0.key, $0.value) })
    }
}

/// At most ``limit`` events per key within a sliding ``window`` (refused replays and purges written to the audit log,
/// per user).
actor RefusalLimiter {
    let limit: Int
    let window: Duration
    private var recent: [String: [ContinuousClock.Instant]] = [:]
    private let clock = ContinuousClock()

    init(limit: Int = 10, window: Duration = .seconds(60)) {
        self.limit = limit
        self.window = window
    }

    /// Whether one more event of `key` is within the limit (and counts it when it is).
    func admit(_ key: String) -> Bool {
        let now = clock.now
        if recent.count >= 10_000 { recent = recent.filter { now - ($0.value.last ?? now) < window } }
        var times = recent[key, default: []].filter { now - $0 < window }
        defer { recent[key] = times.isEmpty ? nil : times }
        guard times.count < limit else { return false }
        times.append(now)
        return true
    }
}
