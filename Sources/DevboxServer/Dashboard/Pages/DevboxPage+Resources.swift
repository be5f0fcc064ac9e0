import DevboxModel
import Foundation

/// The devbox page's "Resources" section (issue 24): the box's usage now and a chart of the
/// last ten minutes. The page's script samples `/dashboard/api/devboxes/:id/stats` every
/// 5 s while the page is open and draws CPU and memory as inline SVG polylines (no library,
/// nothing from elsewhere: the dashboard's CSP allows only its own script).
extension DevboxPage {
    static let resourceStates: Set<DevboxState> = [.ready, .stopped, .provisioning]

    static func resources(_ d: Devbox) -> HTML {
        guard resourceStates.contains(d.state) else { return .empty }
        return """
            <section aria-labelledby="resources-h" id="resources" data-stats-devbox="\(d.id)">
              <h2 id="resources-h">Resources</h2>
              <dl class="facts" id="stats-facts">
                <div><dt>CPU</dt><dd data-stat="cpu">—</dd></div>
                <div><dt>Memory</dt><dd data-stat="memory">—</dd></div>
                <div><dt>Processes</dt><dd data-stat="pids">—</dd></div>
                <div><dt>Disk</dt><dd data-stat="disk">—</dd></div>
                <div><dt>Network in / out</dt><dd data-stat="network">—</dd></div>
              </dl>
              <figure class="stats-chart">
                <svg id="stats-chart" viewBox="0 0 600 120" preserveAspectRatio="none" role="img"
                     aria-label="CPU and memory use over the last minutes" focusable="false">
                  <line x1="0" y1="119" x2="600" y2="119" class="axis"/>
                  <polyline data-series="cpu" class="series-cpu" fill="none" points=""/>
                  <polyline data-series="memory" class="series-memory" fill="none" points=""/>
                </svg>
                <figcaption class="hint"><span class="key-cpu">CPU % of one core</span> · <span class="key-memory">memory % of the limit</span>,
                  sampled every 5 s while this page is open (<span data-stat="samples">0</span> samples; the last 10 minutes)</figcaption>
              </figure>
            </section>
            """
    }
}
