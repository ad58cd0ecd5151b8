import Configuration
import Foundation
import Testing
import Warren

@Suite("Settings through swift-configuration")
struct SettingsTests {
    @Test func defaultsWithoutAnyValue() throws {
        let settings = try WarrenSettings(config: ConfigReader(provider: InMemoryProvider(values: [:])))
        #expect(settings.amqpURL == nil)
        #expect(settings.gracePeriod == .seconds(30))
        #expect(settings.queueType == .classic)
        #expect(settings.redeliveryLimit == 10)
        #expect(settings.workerConfiguration.redeliveryLimit == 10)
        #expect(settings.publishRecoveryTimeout == .seconds(30))
        let missing = #expect(throws: WarrenError.self, "no URL is an error, never a silent in-memory transport") {
            try settings.transport(connectionName: "t")
        }
        #expect(missing?.code == .invalidConfiguration)
        #expect(missing?.message.contains("WARREN_AMQP_URL") == true, "it names the variable")
    }

    @Test func perConsumerOverridesFromAJSONFileAndTheCommandLine() async throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("warren-\(UUID().uuidString).json")
        try #"""
        {"warren": {"amqp": {"url": "amqp://u:p@rabbit:5672/"}, "grace": {"period": 12},
                    "consumers": {"emails": {"prefetch": 50, "concurrency": 2, "enabled": false, "timeout": 5,
                                             "retry": {"attempts": 6, "delays": "0.5, 1, 2"}}}}}
        """#.write(to: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: file) }
        let reader = try await WarrenSettings.reader(overrides: ["warren.grace.period": "3"], jsonFile: file.path)
        let settings = try WarrenSettings(config: reader)
        #expect(settings.amqpURL == "amqp://u:p@rabbit:5672/")
        #expect(settings.gracePeriod == .seconds(3), "the command line wins over the file")
        #expect(try settings.transport(connectionName: "t").endpoints.first?.host == "rabbit")
        let options = try settings.options(for: "emails", defaults: HandlerOptions())
        #expect(options.prefetch == 50)
        #expect(options.maxConcurrentHandlers == 2)
        #expect(options.enabled == false)
        #expect(options.timeout == .seconds(5))
        #expect(options.retry.maxAttempts == 6)
        #expect(options.retry.backoff == .explicit([.milliseconds(500), .seconds(1), .seconds(2)]))
        let untouched = try settings.options(for: "other", defaults: HandlerOptions(prefetch: 7))
        #expect(untouched.prefetch == 7)
    }

    @Test func outOfRangeValuesAreErrors() throws {
        func reader(_ values: [String: ConfigValue]) -> ConfigReader {
            ConfigReader(
                provider: InMemoryProvider(
                    values: Dictionary(
                        uniqueKeysWithValues: values.map {
                            (AbsoluteConfigKey($0.key.split(separator: ".").map(String.init)), $0.value)
                        })))
        }
        #expect(throws: WarrenError.self) { try WarrenSettings(config: reader(["warren.queue.type": "stream"])) }
        #expect(throws: WarrenError.self) { try WarrenSettings(config: reader(["warren.grace.period": -1])) }
        #expect(throws: WarrenError.self) { try WarrenSettings(config: reader(["warren.redelivery.limit": -1])) }
        #expect(throws: WarrenError.self) { try WarrenSettings(config: reader(["warren.redelivery.limit": 2.5])) }
        #expect(throws: WarrenError.self) {
            try WarrenSettings(config: reader(["warren.publish.recovery.timeout": -3]))
        }
        #expect(
            try WarrenSettings(config: reader(["warren.redelivery.limit": 0])).workerConfiguration.redeliveryLimit
                == nil, "0 turns it off")
        let settings = try WarrenSettings(
            config: reader(["warren.consumers.q.concurrency": 0, "warren.consumers.r.retry.delays": "a,b"]))
        #expect(throws: WarrenError.self) { try settings.options(for: "q", defaults: HandlerOptions()) }
        #expect(throws: WarrenError.self) { try settings.options(for: "r", defaults: HandlerOptions()) }
    }
}
