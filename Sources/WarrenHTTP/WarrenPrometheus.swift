import CoreMetrics
import Logging
import Prometheus
import Synchronization
import Warren

/// Warren's metrics in Prometheus form: a swift-metrics factory that feeds a swift-prometheus registry, with
/// histogram buckets fit for job handling (milliseconds to minutes), and that never lets a registration crash the
/// process.
///
/// swift-prometheus stops the process (`fatalError`) when one name is registered with two types, with and without
/// labels, or with two help texts. Warren checks at start that the registry holds nothing that contradicts its own
/// metrics (``WarrenMetric/all``), and from then on checks every registration made through ``factory`` before
/// it reaches the registry: a contradicting one is logged as an error, counted in ``conflicts``, and gets a metric
/// that records nothing.
///
/// ```swift
/// let prometheus = try WarrenPrometheus()
/// MetricsSystem.bootstrap(prometheus.factory)   // once per process
/// ```
public struct WarrenPrometheus: Sendable {
    /// The registry `/metrics` shows.
    public let registry: PrometheusCollectorRegistry
    /// The swift-metrics factory to bootstrap (alone, or in a `MultiplexMetricsHandler`).
    public let factory: any MetricsFactory
    private let guardian: GuardedPrometheusFactory

    /// Buckets of `warren_handler_duration_seconds`: 1 ms to 10 minutes.
    public static let handlerDurationBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30),
        .seconds(60), .seconds(120), .seconds(300), .seconds(600),
    ]
    /// Buckets of `warren_queue_wait_seconds`: 1 ms to an hour (a backlog, or a retry's delay).
    public static let queueWaitBuckets: [Duration] = [
        .milliseconds(1), .milliseconds(10), .milliseconds(50), .milliseconds(100), .milliseconds(500), .seconds(1),
        .seconds(5), .seconds(10), .seconds(30), .seconds(60), .seconds(300), .seconds(900), .seconds(1800),
        .seconds(3600),
    ]

    /// - Parameters:
    ///   - registry: where the metrics go; a new one by default. A registry that already holds metrics (the host's
    ///     own) is checked against Warren's.
    ///   - logger: where a conflicting registration made later is reported.
    /// - Throws: ``WarrenHTTPError`` with ``WarrenHTTPError/Code/metricConflict`` when `registry` holds a metric of
    ///   one of Warren's names with another type, without labels, or with a help text.
    public init(
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(),
        logger: Logger = Logger(label: "warren.http")
    ) throws {
        let existing = MetricShape.read(registry.emitToString())
        var expected: [String: MetricShape] = [:]
        for metric in WarrenMetric.all {
            let shape = MetricShape(warren: metric)
            if let found = existing[metric.name], let why = found.conflict(with: shape) {
                throw WarrenHTTPError(
                    .metricConflict,
                    "the metrics registry already holds '\(metric.name)' \(why); Warren emits it as a \(shape.kind.rawValue) with labels \(metric.labels.joined(separator: ", "))"
                )
            }
            expected[metric.name] = shape
        }
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets[WarrenMetric.handlerDuration.name] = Self.handlerDurationBuckets
        factory.durationHistogramBuckets[WarrenMetric.queueWait.name] = Self.queueWaitBuckets
        self.registry = registry
        guardian = GuardedPrometheusFactory(
            wrapped: factory, known: existing.merging(expected) { _, warren in warren }, logger: logger)
        self.factory = guardian
    }

    /// Registrations refused because they contradicted an earlier one, as "name: why" (empty when there were none).
    public var conflicts: [String] { guardian.conflicts }

    /// The exposition `/metrics` serves.
    public func exposition() -> [UInt8] { registry.emitToBuffer() }
}

/// What swift-prometheus keeps fixed per metric name.
struct MetricShape: Sendable, Equatable {
    /// swift-prometheus keeps timers (duration histograms) and aggregated recorders (value histograms) apart.
    enum Kind: String, Sendable {
        case counter, gauge
        case histogram = "histogram"
        case valueHistogram = "histogram of values"
        /// Read from an exposition, which does not tell the two histograms apart.
        case anyHistogram = "histogram (of durations or values)"
    }

    var kind: Kind
    var labeled: Bool
    var hasHelp: Bool = false

    init(kind: Kind, labeled: Bool, hasHelp: Bool = false) {
        self.kind = kind
        self.labeled = labeled
        self.hasHelp = hasHelp
    }

    init(warren metric: WarrenMetric) {
        let kind: Kind =
            switch metric.kind {
            case .counter: .counter
            case .gauge: .gauge
            case .histogram: .histogram
            }
        self.init(kind: kind, labeled: !metric.labels.isEmpty)
    }

    /// Why a registration of `requested` would crash swift-prometheus, given this one exists; `nil` when it fits.
    /// Registrations through swift-metrics carry no help text.
    func conflict(with requested: MetricShape) -> String? {
        let sameKind =
            kind == requested.kind
            || (kind == .anyHistogram && [.histogram, .valueHistogram].contains(requested.kind))
            || (requested.kind == .anyHistogram && [.histogram, .valueHistogram].contains(kind))
        if !sameKind { return "as a \(kind.rawValue)" }
        if labeled != requested.labeled { return labeled ? "with labels" : "without labels" }
        if hasHelp != requested.hasHelp { return "with a help text" }
        return nil
    }

    /// The shapes of the metrics in a Prometheus text exposition, by name.
    static func read(_ exposition: String) -> [String: MetricShape] {
        var shapes: [String: MetricShape] = [:]
        var helped: Set<String> = []
        for line in exposition.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 3)
            if words.count >= 4, words[0] == "#", words[1] == "HELP", !words[3].isEmpty {
                helped.insert(String(words[2]))
            }
            guard words.count >= 4, words[0] == "#", words[1] == "TYPE" else { continue }
            let kind: Kind =
                switch words[3] {
                case "counter": .counter
                case "gauge": .gauge
                default: .anyHistogram
                }
            shapes[String(words[2])] = MetricShape(kind: kind, labeled: false)
        }
        for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
            guard let brace = line.firstIndex(of: "{") else { continue }
            var name = String(line[..<brace])
            for suffix in ["_bucket", "_count", "_sum"] where shapes[name] == nil && name.hasSuffix(suffix) {
                name.removeLast(suffix.count)
            }
            guard var shape = shapes[name] else { continue }
            // A histogram's buckets always carry `le`: only other labels make it labeled.
            let labels = line[line.index(after: brace)...].prefix { $0 != "}" }
            if shape.kind != .anyHistogram || labels.split(separator: ",").contains(where: { !$0.hasPrefix("le=") }) {
                shape.labeled = true
                shapes[name] = shape
            }
        }
        for name in helped { shapes[name]?.hasHelp = true }
        return shapes
    }
}

/// Forwards to swift-prometheus what fits the names registered so far; refuses, with a log line, what would crash it.
final class GuardedPrometheusFactory: MetricsFactory, Sendable {
    private let wrapped: PrometheusMetricsFactory
    private let logger: Logger
    private struct State {
        var known: [String: MetricShape]
        var conflicts: [String] = []
    }
    private let state: Mutex<State>

    init(wrapped: PrometheusMetricsFactory, known: [String: MetricShape], logger: Logger) {
        self.wrapped = wrapped
        self.logger = logger
        state = Mutex(State(known: known))
    }

    var conflicts: [String] { state.withLock { $0.conflicts } }

    /// Whether `label` may be registered as `shape`; records it when it may.
    private func admits(_ label: String, _ dimensions: [(String, String)], _ kind: MetricShape.Kind) -> Bool {
        let requested = MetricShape(kind: kind, labeled: !dimensions.isEmpty)
        let refusal = state.withLock { state -> String? in
            guard let existing = state.known[label] else {
                state.known[label] = requested
                return nil
            }
            guard let why = existing.conflict(with: requested) else { return nil }
            let conflict =
                "\(label): registered \(why), now requested as a \(kind.rawValue)\(requested.labeled ? " with labels" : " without labels")"
            if !state.conflicts.contains(conflict) { state.conflicts.append(conflict) }
            return conflict
        }
        if let refusal {
            logger.error(
                "metric not registered: it contradicts an earlier registration of its name; it records nothing",
                metadata: ["conflict": "\(refusal)"])
            return false
        }
        return true
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        admits(label, dimensions, .counter)
            ? wrapped.makeCounter(label: label, dimensions: dimensions) : NOOPMetricsHandler.instance
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        admits(label, dimensions, .counter)
            ? wrapped.makeFloatingPointCounter(label: label, dimensions: dimensions) : NOOPMetricsHandler.instance
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        admits(label, dimensions, aggregate ? .valueHistogram : .gauge)
            ? wrapped.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate)
            : NOOPMetricsHandler.instance
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        admits(label, dimensions, .gauge)
            ? wrapped.makeMeter(label: label, dimensions: dimensions) : NOOPMetricsHandler.instance
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        admits(label, dimensions, .histogram)
            ? wrapped.makeTimer(label: label, dimensions: dimensions) : NOOPMetricsHandler.instance
    }

    func destroyCounter(_ handler: any CounterHandler) { wrapped.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) {
        wrapped.destroyFloatingPointCounter(handler)
    }
    func destroyRecorder(_ handler: any RecorderHandler) { wrapped.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { wrapped.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { wrapped.destroyTimer(handler) }
}
