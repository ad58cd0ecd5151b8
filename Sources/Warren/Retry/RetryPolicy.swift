import Foundation

/// How a registration retries a message whose handler failed.
///
/// A failed attempt is retried after a delay until `maxAttempts` attempts were made; then the message goes to the
/// dead letters. Errors for which `isPermanent` is true (by default: ``Reject`` and decoding errors) go to the dead
/// letters at once. On RabbitMQ each distinct delay is a delay queue, so keep the set of delays small: jitter is
/// quantized into ``Backoff/jitterSteps`` steps.
public struct RetryPolicy: Sendable {
    /// Attempts in all, the first one included (1 means never retry).
    public var maxAttempts: Int
    public var backoff: Backoff
    /// Errors that no retry can fix.
    public var isPermanent: @Sendable (any Error) -> Bool

    /// The delays between attempts.
    public enum Backoff: Sendable, Hashable {
        /// `initial`, then multiplied by `multiplier` after each failed attempt, capped at `maximum`; with `jitter`
        /// (0...1) each delay is spread over ±jitter, in ``jitterSteps`` steps.
        case exponential(
            initial: Duration, multiplier: Double = 2, maximum: Duration = .seconds(300), jitter: Double = 0)
        /// An explicit list: the delay after failed attempt n is `delays[n - 1]`, the last one repeating.
        case explicit([Duration])

        /// Into how many steps jitter is quantized (so at most this many + 1 delay queues per base delay).
        public static let jitterSteps = 4
    }

    public init(
        maxAttempts: Int, backoff: Backoff,
        isPermanent: @escaping @Sendable (any Error) -> Bool = RetryPolicy.defaultPermanence
    ) {
        precondition(maxAttempts >= 1, "maxAttempts counts the first attempt, so it is at least 1")
        self.maxAttempts = maxAttempts
        self.backoff = backoff
        self.isPermanent = isPermanent
    }

    /// Five attempts, 1 s, 2 s, 4 s, 8 s apart.
    public static let `default` = RetryPolicy(maxAttempts: 5, backoff: .exponential(initial: .seconds(1)))

    /// One attempt: a failure goes straight to the dead letters.
    public static let never = RetryPolicy(maxAttempts: 1, backoff: .explicit([]))

    /// ``Reject`` and `DecodingError` are permanent; everything else is transient.
    public static let defaultPermanence: @Sendable (any Error) -> Bool = { error in
        error is Reject || error is DecodingError
    }

    /// The delay after failed attempt `attempt` (1-based). `jitterSample` in 0..<1 picks the jitter step.
    public func delay(afterAttempt attempt: Int, jitterSample: Double = 0.5) -> Duration {
        let step = Int((min(max(jitterSample, 0), 0.999_999) * Double(Backoff.jitterSteps + 1)).rounded(.down))
        return delay(afterAttempt: attempt, jitterStep: step)
    }

    /// Every delay this policy can produce between its attempts (each jitter step of each attempt): on RabbitMQ the
    /// delay queues to declare before the first failure. Empty for a policy that never retries.
    public var possibleDelays: Set<Duration> {
        guard maxAttempts > 1 else { return [] }
        var delays = Set<Duration>()
        for attempt in 1..<maxAttempts {
            for step in 0...Backoff.jitterSteps { delays.insert(delay(afterAttempt: attempt, jitterStep: step)) }
        }
        return delays
    }

    /// The longest wait between two attempts (every jitter step of the first 64 attempts, by which any backoff has
    /// reached its cap); zero for a policy that never retries. An ordered flow's bound, and its cap on `RetryAfter`.
    var longestDelay: Duration {
        guard maxAttempts > 1 else { return .zero }
        var longest = Duration.zero
        for attempt in 1..<min(maxAttempts, 64) {
            for step in 0...Backoff.jitterSteps {
                longest = max(longest, delay(afterAttempt: attempt, jitterStep: step))
            }
        }
        return longest
    }

    /// The delay after failed attempt `attempt` at jitter step `step` (0...``Backoff/jitterSteps``, ignored without
    /// jitter), in whole milliseconds: the delay names its queue.
    private func delay(afterAttempt attempt: Int, jitterStep step: Int) -> Duration {
        switch backoff {
        case .explicit(let delays):
            guard let last = delays.last else { return .zero }
            return attempt - 1 < delays.count ? delays[max(0, attempt - 1)] : last
        case .exponential(let initial, let multiplier, let maximum, let jitter):
            var seconds = initial.seconds * pow(multiplier, Double(max(0, attempt - 1)))
            seconds = min(seconds, maximum.seconds)
            if jitter > 0 {
                let steps = Double(Backoff.jitterSteps)
                seconds *= 1 - jitter + 2 * jitter * Double(step) / steps
            }
            return .milliseconds(Int64((seconds * 1000).rounded()))
        }
    }
}

/// Thrown by a handler for a message that can never succeed: it goes to the dead letters at once, with `reason`.
public struct Reject: Error, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Thrown by a handler to be retried after a specific delay (still bounded by the policy's `maxAttempts`).
public struct RetryAfter: Error, Sendable, CustomStringConvertible {
    public var delay: Duration
    public var reason: String
    public init(_ delay: Duration, reason: String = "retry requested by the handler") {
        self.delay = delay
        self.reason = reason
    }
    public var description: String { "\(reason) (after \(delay))" }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }

    var milliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}
