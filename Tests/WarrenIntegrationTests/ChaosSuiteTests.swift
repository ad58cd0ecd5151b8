import Foundation
import Testing
import WarrenTestSupport

/// The fast part of the chaos suite (`make chaos` runs all of it): `warren-chaos run --fast` against a broker of its
/// own, as a user would run it. Every confirmed message must be handled or parked with a reason.
extension OwnBrokerSuites {
    @Suite("Chaos suite, fast part (dedicated broker)", .tags(.broker), .needs(.broker), .deletesItsQueues)
    struct ChaosSuiteTests {
        struct Summary: Decodable {
            struct Scenario: Decodable {
                var fault: String
                var published: Int
                var handled: Int
                var deadLettered: Int
                var lost: Int
                var workerRestarts: Int
                var deadLetterReasons: [String: Int]
                var passed: Bool
            }

            var scenarios: [Scenario]
            var lost: Int
            var passed: Bool
        }

        @Test func nothingIsLostThroughStopAppAKilledWorkerAPoisonMessageAndHostileInput() async throws {
            let run = try await HostAndCLITests.run("warren-chaos", ["run", "--fast"], url: nil)
            let lastLine = try #require(
                run.output.split(separator: "\n").last, "no output; stderr: \(run.errors.suffix(2000))")
            let decoder = JSONDecoder()
            decoder.keyDecodingStrategy = .convertFromSnakeCase
            let summary = try decoder.decode(Summary.self, from: Data(lastLine.utf8))
            #expect(lastLine.contains("\"dead_lettered\""), "snake_case keys")
            #expect(run.status == 0, "\(run.output)")
            #expect(summary.passed && summary.lost == 0)
            #expect(summary.scenarios.map(\.fault) == ["stop-app", "worker-kill", "poison", "hostile"])
            for scenario in summary.scenarios {
                #expect(scenario.published >= 600, "\(scenario.fault)")
                #expect(scenario.lost == 0, "\(scenario.fault)")
                #expect(scenario.handled + scenario.deadLettered == scenario.published, "\(scenario.fault)")
            }
            let poison = summary.scenarios[2]
            #expect(poison.deadLetterReasons == ["redelivery-limit": 1], "only the poison message is parked")
            // Limit 3: the fourth return parks it. A crash right after a counted copy was confirmed, before the original's
            // ack left, leaves a second copy that is counted on its own, so a few more crashes can happen; never unbounded.
            #expect((4...8).contains(poison.workerRestarts), "crashes: \(poison.workerRestarts)")
            #expect(summary.scenarios[1].workerRestarts >= 1, "the worker was killed and restarted")
            let hostile = summary.scenarios[3]
            #expect(hostile.workerRestarts == 0, "bad input never crashes the worker")
            #expect(
                hostile.deadLetterReasons == [
                    "too-large": 75, "undecodable": 225, "unknown-type": 75, "unsupported-content-encoding": 75,
                ])
            #expect(hostile.handled == 150, "the valid messages, with garbage headers or not, are handled")
        }
    }
}
