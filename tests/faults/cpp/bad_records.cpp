// Reads a steering stream with intransit_steering.hpp as a simulation would (poll steps 0..9)
// and prints what the client did: "applied=N rejected=N replayed=N received=N values=v1,v2".
//   bad_records STREAM [report STREAM2 N]  (report: also write STREAM2.end.json for N steps)
//   bad_records STREAM follow SECONDS N     (poll a step every 10 ms for at most SECONDS, until N values
//                                            were applied: a running simulation)
#include "intransit_steering.hpp"

#include <iostream>
#include <string>
#include <vector>

int main(int argc, char **argv)
{
    if (argc < 2)
    {
        std::cerr << "usage: bad_records STREAM [report STREAM2 N]\n";
        return 2;
    }
    if (argc == 5 && std::string(argv[2]) == "report")
    {
        return intransit::report_end_of_stream(argv[3], std::stoll(argv[4])) ? 0 : 1;
    }
    std::vector<double> values;
    intransit::SteeringClient client(argv[1], 50);
    client.declareDouble("dt", 0.0, 1.0, [&](double v) { values.push_back(v); });
    if (argc == 5 && std::string(argv[2]) == "follow")
    {
        const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(std::stod(argv[3]));
        const size_t want = static_cast<size_t>(std::stoul(argv[4]));
        for (int64_t step = 0; std::chrono::steady_clock::now() < until && values.size() < want; ++step)
        {
            client.poll(step);
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
    }
    else
    {
        for (int64_t step = 0; step < 10; ++step)
        {
            client.poll(step);
        }
    }
    const auto &st = client.stats();
    std::cout << "applied=" << st.applied << " rejected=" << st.rejected << " replayed=" << st.replayed
              << " received=" << st.received << " values=";
    for (size_t i = 0; i < values.size(); ++i)
        std::cout << (i ? "," : "") << values[i];
    std::cout << std::endl;
    return 0;
}
