import Metrics
import Synchronization

/// The swift-metrics instruments of one consumer loop, with `queue` and `type` dimensions (never message ids or
/// credentials); made once per type and outcome, not per message. Every name is listed, with its labels, in
/// ``WarrenMetric`` and `docs/operating.md`.
final class WorkerMetrics: Sendable {
    private struct TypeInstruments {
        var outcomes: [String: Counter] = [:]
        var deadLetters: [String: Counter] = [:]
        var retries: Counter
        var duration: Timer
        var queueWait: Timer
    }

    /// The work queue: settlements are counted under it.
    let queue: String
    /// Gauges of the queue consumed (the work queue or its redelivered queue), so that two loops of one work queue
    /// do not overwrite each other's value.
    let inFlight: Gauge
    let consumers: Gauge
    private let dropped: Counter
    private struct State {
        var byType: [String: TypeInstruments] = [:]
        /// The instruments of the last event: consecutive events of one type and outcome (the usual run) find them
        /// by comparing two strings instead of hashing them.
        var last: (type: String, outcome: String, counter: Counter, retries: Counter?, duration: Timer, wait: Timer)?
    }

    private let state = Mutex(State())

    init(queue: String, source: String) {
        self.queue = queue
        inFlight = Gauge(label: WarrenMetric.handlersInFlight.name, dimensions: [("queue", source)])
        consumers = Gauge(label: WarrenMetric.consumers.name, dimensions: [("queue", source)])
        dropped = Counter(label: WarrenMetric.settlementsDropped.name, dimensions: [("queue", queue)])
    }

    func droppedSettlement() { dropped.increment() }

    func record(_ event: SettlementEvent) {
        let type = event.messageType ?? "unknown"
        let outcome = event.outcome.name
        let (counter, extra, duration, wait) = state.withLock { state -> (Counter, Counter?, Timer, Timer) in
            if let last = state.last, last.type == type, last.outcome == outcome {
                return (last.counter, last.retries, last.duration, last.wait)
            }
            let found = Self.instruments(type: type, outcome: event.outcome, queue: queue, in: &state.byType)
            // Dead letters are counted per reason: never taken from the one-entry cache.
            if case .deadLettered = event.outcome {
            } else {
                state.last = (type, outcome, found.0, found.1, found.2, found.3)
            }
            return found
        }
        counter.increment()
        extra?.increment()
        duration.recordNanoseconds(Self.nanoseconds(event.duration))
        if let queueWait = event.queueWait { wait.recordNanoseconds(Self.nanoseconds(queueWait)) }
    }

    private static func nanoseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
    }

    private static func instruments(
        type: String, outcome event: SettlementEvent.Outcome, queue: String, in byType: inout [String: TypeInstruments]
    ) -> (Counter, Counter?, Timer, Timer) {
        let outcome = event.name
        // The instruments exist after a type's first message: look them up without copying anything.
        if let instruments = byType[type], let counter = instruments.outcomes[outcome],
            Self.hasEvery(for: event, instruments)
        {
            return (counter, Self.extra(for: event, in: instruments), instruments.duration, instruments.queueWait)
        }
        let dimensions = [("queue", queue), ("type", type)]
        var instruments =
            byType.removeValue(forKey: type)
            ?? TypeInstruments(
                retries: Counter(label: WarrenMetric.retries.name, dimensions: dimensions),
                duration: Timer(
                    label: WarrenMetric.handlerDuration.name, dimensions: dimensions, preferredDisplayUnit: .seconds),
                queueWait: Timer(
                    label: WarrenMetric.queueWait.name, dimensions: dimensions, preferredDisplayUnit: .seconds))
        let counter =
            instruments.outcomes[outcome]
            ?? Counter(label: WarrenMetric.messages.name, dimensions: dimensions + [("outcome", outcome)])
        instruments.outcomes[outcome] = counter
        if case .deadLettered(let reason) = event, instruments.deadLetters[reason.kind.rawValue] == nil {
            instruments.deadLetters[reason.kind.rawValue] = Counter(
                label: WarrenMetric.deadLetters.name, dimensions: dimensions + [("reason", reason.kind.rawValue)])
        }
        byType[type] = instruments
        return (counter, Self.extra(for: event, in: instruments), instruments.duration, instruments.queueWait)
    }

    /// Whether the counter of a dead letter's reason exists already (every other outcome's does with its type).
    private static func hasEvery(for outcome: SettlementEvent.Outcome, _ instruments: TypeInstruments) -> Bool {
        guard case .deadLettered(let reason) = outcome else { return true }
        return instruments.deadLetters[reason.kind.rawValue] != nil
    }

    /// The counter an outcome adds to besides `warren_messages_total`, when there is one.
    private static func extra(for outcome: SettlementEvent.Outcome, in instruments: TypeInstruments) -> Counter? {
        switch outcome {
        case .retried: instruments.retries
        case .deadLettered(let reason): instruments.deadLetters[reason.kind.rawValue]
        default: nil
        }
    }
}
