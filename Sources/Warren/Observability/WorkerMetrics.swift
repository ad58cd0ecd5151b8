import Metrics
import Synchronization

/// The swift-metrics instruments of one queue's consumer, with `queue` and `type` dimensions (never message ids or
/// credentials); made once per type and outcome, not per message.
///
/// - `warren_messages_total{queue,type,outcome}`: settled deliveries by outcome (`ack`, `retry`, `dead-letter`,
///   `requeue`).
/// - `warren_messages_retried_total{queue,type}`, `warren_messages_dead_lettered_total{queue,type}`.
/// - `warren_handler_duration_seconds{queue,type}`: handling and settling time.
/// - `warren_handlers_in_flight{queue}`: handlers running now.
/// - `warren_settlements_dropped_total{queue}`: settlements that could not be sent because the channel was gone (the
///   broker redelivers those messages).
final class WorkerMetrics: Sendable {
    private struct TypeInstruments {
        var outcomes: [String: Counter] = [:]
        var retried: Counter
        var deadLettered: Counter
        var duration: Timer
    }

    let queue: String
    let inFlight: Gauge
    private let dropped: Counter
    private struct State {
        var byType: [String: TypeInstruments] = [:]
        /// The instruments of the last event: consecutive events of one type and outcome (the usual run) find them
        /// by comparing two strings instead of hashing them.
        var last: (type: String, outcome: String, counter: Counter, extra: Counter?, timer: Timer)?
    }

    private let state = Mutex(State())

    init(queue: String) {
        self.queue = queue
        inFlight = Gauge(label: "warren_handlers_in_flight", dimensions: [("queue", queue)])
        dropped = Counter(label: "warren_settlements_dropped_total", dimensions: [("queue", queue)])
    }

    func droppedSettlement() { dropped.increment() }

    func record(_ event: SettlementEvent) {
        let type = event.messageType ?? "unknown"
        let outcome = event.outcome.name
        let (counter, extra, timer) = state.withLock { state -> (Counter, Counter?, Timer) in
            if let last = state.last, last.type == type, last.outcome == outcome { return (last.counter, last.extra, last.timer) }
            let found = Self.instruments(type: type, outcome: event.outcome, queue: queue, in: &state.byType)
            state.last = (type, outcome, found.0, found.1, found.2)
            return found
        }
        counter.increment()
        extra?.increment()
        timer.recordNanoseconds(event.duration.components.seconds * 1_000_000_000 + event.duration.components.attoseconds / 1_000_000_000)
    }

    private static func instruments(
        type: String, outcome event: SettlementEvent.Outcome, queue: String, in byType: inout [String: TypeInstruments]
    ) -> (Counter, Counter?, Timer) {
        let outcome = event.name
        // The instruments exist after a type's first message: look them up without copying anything.
        if let instruments = byType[type], let counter = instruments.outcomes[outcome] {
            return (counter, Self.extra(for: event, in: instruments), instruments.duration)
        }
        let dimensions = [("queue", queue), ("type", type)]
        var instruments = byType.removeValue(forKey: type) ?? TypeInstruments(
            retried: Counter(label: "warren_messages_retried_total", dimensions: dimensions),
            deadLettered: Counter(label: "warren_messages_dead_lettered_total", dimensions: dimensions),
            duration: Timer(label: "warren_handler_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds))
        let counter = Counter(label: "warren_messages_total", dimensions: dimensions + [("outcome", outcome)])
        instruments.outcomes[outcome] = counter
        byType[type] = instruments
        return (counter, Self.extra(for: event, in: instruments), instruments.duration)
    }

    private static func extra(for outcome: SettlementEvent.Outcome, in instruments: TypeInstruments) -> Counter? {
        switch outcome {
        case .retried: instruments.retried
        case .deadLettered: instruments.deadLettered
        default: nil
        }
    }
}
