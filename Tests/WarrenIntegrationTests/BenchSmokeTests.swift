import Foundation
import Testing
import WarrenTestSupport

/// Every `warren-bench` scenario runs end to end (tiny sizes, debug build, the shared broker) and ends with its JSON
/// line, so the benchmark suite cannot rot between performance sessions. The figures are not checked here: they
/// live in docs/performance.md, measured on a release build.
@Suite("warren-bench scenarios run (broker)", .serialized, .tags(.broker), .needs(.broker), .deletesItsQueues)
struct BenchSmokeTests {
    func run(_ arguments: [String]) async throws -> [String: Any] {
        let url = try await TestBroker.url()
        let run = try await HostAndCLITests.run("warren-bench", arguments + ["--url", url], url: nil)
        #expect(run.status == 0, "\(arguments.first ?? ""): \(run.errors.suffix(1000))")
        let last = try #require(run.output.split(separator: "\n").last)
        return try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
    }

    @Test func theLedgerScenariosRunAndPrintTheirRows() async throws {
        let url = try await TestBroker.url()
        func rows(_ arguments: [String]) async throws -> [[String: Any]] {
            let run = try await HostAndCLITests.run("warren-bench", arguments, url: nil)
            #expect(run.status == 0, "\(arguments.first ?? ""): \(run.errors.suffix(1000))")
            let last = try #require(run.output.split(separator: "\n").last)
            return try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [[String: Any]])
        }
        let ingest = try await rows(["ledger", "--events", "2000", "--url", url])
        #expect(ingest.compactMap { $0["mode"] as? String } == ["store", "ingest"])
        #expect(ingest.allSatisfy { ($0["events_per_s"] as? Double ?? 0) > 0 })
        let search = try await rows(["ledger-search", "--jobs", "5000", "--dead-letters", "500", "--queries", "2"])
        // Ten store searches, then seven of the dashboard's pages and API (warren-dashboard is built beside the tests).
        #expect(search.count == 17)
        #expect(
            search.allSatisfy { ($0["rows"] as? Int ?? 0) > 0 },
            "every search and page finds rows in the generated data: \(search)")
        #expect(
            search.filter { ($0["search"] as? String ?? "").hasPrefix("page: ") }.allSatisfy {
                ($0["bytes"] as? Int ?? 0) > 1_000
            })
        let deadLetters = try await rows(["dead-letters", "--count", "300", "--url", url])
        #expect(
            deadLetters.compactMap { $0["mode"] as? String } == [
                "raw-consume", "intake", "raw-publish-confirmed", "replay",
            ])
        #expect(deadLetters.allSatisfy { ($0["msgs_per_s"] as? Double ?? 0) > 0 && $0["messages"] as? Int == 300 })
    }

    @Test func consumePublishLatencyRetryAndMemoryEachPrintTheirJSON() async throws {
        let consume = try await run([
            "consume", "--messages", "300", "--mode", "raw,client,framework", "--queue", "bench.smoke.consume",
        ])
        #expect(consume["mode"] as? String == "framework")
        #expect((consume["consume_ratio_vs_raw"] as? Double ?? 0) > 0)
        // At most one ack frame and one resumption of the consuming task per message. Not at least one: the clock
        // starts once the worker reports that it consumes, and on a loaded machine a run this small can be mostly
        // handled, and its acks sent, by then.
        #expect((0...1000).contains(consume["consume_ack_frames_per_1k_msgs"] as? Double ?? -1))
        #expect(consume["consume_stalls"] as? Int != nil)
        #expect((0...1000).contains(consume["consume_wakeups_per_1k_msgs"] as? Double ?? -1))

        let inMemory = try await run([
            "consume", "--messages", "300", "--mode", "raw,in-memory", "--queue", "bench.smoke.memory-transport",
        ])
        #expect(inMemory["mode"] as? String == "in-memory")
        #expect((inMemory["consume_ratio_vs_raw"] as? Double ?? 0) > 0)

        let bare = try await run([
            "consume", "--messages", "200", "--mode", "raw,client", "--format", "bare", "--queue", "bench.smoke.bare",
        ])
        #expect(bare["mode"] as? String == "client")

        // Every mode filled by the raw loop: the framework still gets messages it can decode (--format bare is for
        // the raw and client modes; else its handler would never run and the run never end), and no mode counts as
        // publishing with confirms.
        let rawFill = try await run([
            "consume", "--messages", "200", "--mode", "raw,client,framework", "--format", "bare", "--fill", "raw",
            "--queue", "bench.smoke.fill",
        ])
        #expect(rawFill["mode"] as? String == "framework")
        #expect(rawFill["publish_confirmed"] as? Bool == false)

        let publish = try await run([
            "publish", "--messages", "200", "--runs", "2", "--batches", "1,10", "--window", "50", "--queue",
            "bench.smoke.publish",
        ])
        #expect(
            (publish["publish"] as? [[String: Any]])?.map { $0["mode"] as? String ?? "" } == [
                "raw", "raw-confirmed-batch-10", "raw-confirmed-window-50", "client-batch-1", "client-batch-10",
                "publisher-window-50",
                "publisher-batch-10",
            ])
        let onlyClient = try await run([
            "publish", "--messages", "100", "--batches", "10", "--mode", "client", "--queue", "bench.smoke.publish",
        ])
        #expect(
            (onlyClient["publish"] as? [[String: Any]])?.map { $0["mode"] as? String ?? "" } == [
                "raw", "client-batch-10",
            ])

        let latency = try await run(["latency", "--rate", "200", "--seconds", "1", "--queue", "bench.smoke.latency"])
        let rows = try #require(latency["latency"] as? [[String: Any]])
        #expect(rows.map { $0["messages"] as? Int } == [200, 200])

        let retry = try await run(["retry", "--messages", "100", "--queue", "bench.smoke.retry"])
        #expect((retry["retry"] as? [[String: Any]])?.count == 2)

        let memory = try await run(["memory", "--backlogs", "100,200", "--queue", "bench.smoke.memory"])
        #expect((memory["memory"] as? [[String: Any]])?.allSatisfy { ($0["peak_rss_mb"] as? Double ?? 0) > 0 } == true)
    }
}
