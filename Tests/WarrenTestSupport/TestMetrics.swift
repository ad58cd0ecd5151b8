import Metrics
import MetricsTestKit
import WarrenHTTP

/// swift-metrics can be bootstrapped once per process; every test shares it: TestMetrics for looking at single
/// instruments, and Warren's Prometheus registry for what `/metrics` serves.
package let testMetrics: TestMetrics = bootstrappedMetrics.test
package let testPrometheus: WarrenPrometheus = bootstrappedMetrics.prometheus
private let bootstrappedMetrics: (test: TestMetrics, prometheus: WarrenPrometheus) = {
    let metrics = TestMetrics()
    let prometheus = try! WarrenPrometheus(logger: TestBroker.quietLogger())
    MetricsSystem.bootstrap(MultiplexMetricsHandler(factories: [metrics, prometheus.factory]))
    return (metrics, prometheus)
}()
