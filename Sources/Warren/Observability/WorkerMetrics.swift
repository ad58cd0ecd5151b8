import Metrics

/// The swift-metrics instruments of a worker, with `queue` and `type` dimensions (never message ids or credentials).
///
/// - `warren_messages_total{queue,type,outcome}`: settled deliveries by outcome (`ack`, `retry`, `dead-letter`,
///   `requeue`).
/// - `warren_messages_retried_total{queue,type}`, `warren_messages_dead_lettered_total{queue,type}`.
/// - `warren_handler_duration_seconds{queue,type}`: handling and settling time.
/// - `warren_handlers_in_flight{queue}`: handlers running now.
enum WorkerMetrics {
    static func record(_ event: SettlementEvent) {
        let type = event.messageType ?? "unknown"
        let dimensions = [("queue", event.queue), ("type", type)]
        Counter(label: "warren_messages_total", dimensions: dimensions + [("outcome", event.outcome.name)]).increment()
        switch event.outcome {
        case .retried: Counter(label: "warren_messages_retried_total", dimensions: dimensions).increment()
        case .deadLettered: Counter(label: "warren_messages_dead_lettered_total", dimensions: dimensions).increment()
        default: break
        }
        Timer(label: "warren_handler_duration_seconds", dimensions: dimensions, preferredDisplayUnit: .seconds)
            .recordNanoseconds(event.duration.components.seconds * 1_000_000_000 + event.duration.components.attoseconds / 1_000_000_000)
    }

    static func inFlight(queue: String) -> Gauge {
        Gauge(label: "warren_handlers_in_flight", dimensions: [("queue", queue)])
    }
}
