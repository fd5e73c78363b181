// heat_sim -- reference C++ simulation for intransit: a 2D periodic temperature field with
// moving Gaussian heat sources (hot spots), written through ADIOS2 and steerable.
//
// It stands for a user's compiled code: it opens its ADIOS2 IO *by name* from an XML file, so
// BP5 files (adios2.xml) versus a live SST stream to the analytics (adios2_sst.xml) is an XML
// change only -- the same binary, no rebuild.  It includes one header from intransit,
// adapters/intransit_steering.hpp, to receive steering commands (--steering STREAM).
//
// Physics, on an ny x nx periodic grid (cell size 1, time in model units):
//
//   dT/dt = -u . grad T + kappa lap T - lambda (T - T_amb) + sum_k S_k(x, t)
//
//   u = (0.15, 0.5) cells per unit time (rows, columns), kappa = 0.2, lambda = 0.5,
//   T_amb = a weak smooth ambient pattern (3 low Fourier modes, amplitude 0.3, random phases),
//   S_k = A_k exp(-|x - p_k(t)|^2 / w_k^2) (minimum image), p_k(t) = p_k(0) + v_k t (periodic),
//   v_k = u + a small random offset, so each hot spot sits on its source (lag <= 0.2 cells);
//   A_k = 5 x U(0.8, 1.2) gives hot-spot peaks near 9, background |T| < 1.
//
// Explicit Euler, first-order upwind advection, 5-point Laplacian; dt (default 0.1, steerable
// within [1e-4, 0.5], all stable) and 10 substeps per output step.  A warm-up from t = -10 to 0
// (same trajectories) makes step 0 already near equilibrium.  Deterministic for a given seed.
//
// Ground truth (--truth, default <stream without .bp>_truth.csv): CSV
// step,blob_id,c0,c1,peak,width -- one row per step and source: c0 = row, c1 = column of the
// source centre in cells (cell i has coordinate i, in [0, n)), peak = T interpolated there,
// width = w_k in cells (e^-1 radius).
//
// ADIOS2 variables per step: temperature (double, global {ny, nx}, --blocks blocks each written
// with SetSelection), dt (double: the time step in effect from this step on), time (double),
// step (int64).
//
// Steering (--steering STREAM; --steering-xml for an SST reverse stream): stop (end cleanly after the current step, exit 0), checkpoint
// (BP5 file checkpoint_<step, 6 digits>.bp in --checkpoint-dir with temperature, step, time, dt),
// set dt in [1e-4, 0.5], set sleep_ms (int64) in [0, 10000].  Anything else is rejected.
//
// Last line on stdout:
//   heat_sim: steps=N stopped_at=K applied=A rejected=R replayed=P received=X dt=D
// (stopped_at=-1 when the run was not stopped by steering).

#include <adios2.h>

#include "intransit_steering.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

namespace
{

constexpr double kPi = 3.14159265358979323846;
constexpr double kUy = 0.15, kUx = 0.5; // mean flow, cells per unit time
constexpr double kKappa = 0.2;          // diffusivity, cells^2 per unit time
constexpr double kLambda = 0.5;         // relaxation rate to the ambient field
constexpr int kSubsteps = 10;           // Euler substeps per output step
constexpr double kWarmup = 10.0;        // model time before step 0
constexpr double kDtLow = 1e-4, kDtHigh = 0.5;

volatile std::sig_atomic_t g_Signal = 0;

extern "C" void OnSignal(int sig)
{
    if (g_Signal != 0)
    {
        _exit(128 + sig); // second signal: give up at once
    }
    g_Signal = sig;
}

struct UsageError : std::runtime_error
{
    using std::runtime_error::runtime_error;
};

struct Args
{
    std::string xml;
    std::string io = "SimulationOutput";
    std::string stream = "heat.bp";
    int size = 128;
    int steps = 50;
    uint64_t seed = 0;
    int spots = 4;
    int blocks = 1;
    std::string truth; // "" = default beside the output; "none" = off
    std::string steering;
    std::string steeringXml;
    int steeringTimeoutMs = 50;
    std::string checkpointDir;
    int sleepMs = 0;
    double dt = 0.1;
};

const char *kUsage =
    "usage: heat_sim --xml FILE [--io NAME] [--stream NAME] [--size N] [--steps N] [--seed N]\n"
    "                [--spots N] [--blocks N] [--dt DT] [--truth PATH|none]\n"
    "                [--steering STREAM] [--steering-xml FILE] [--steering-timeout-ms MS]\n"
    "                [--checkpoint-dir DIR]\n"
    "                [--sleep-ms MS]\n"
    "  --xml FILE              ADIOS2 XML config; the IO is opened by name from it (required)\n"
    "  --io NAME               IO name in the XML (default SimulationOutput)\n"
    "  --stream NAME           name given to Open: a BP5 directory, or the SST stream whose\n"
    "                          contact file is NAME.sst (default heat.bp)\n"
    "  --size N                grid N x N, 16..4096 (default 128)\n"
    "  --steps N               output steps, >= 1 (default 50)\n"
    "  --seed N                random seed, >= 0 (default 0)\n"
    "  --spots N               moving heat sources, 0..64 (default 4)\n"
    "  --blocks N              blocks written per step (near-square PY x PX), >= 1 (default 1)\n"
    "  --dt DT                 initial time step, in [1e-4, 0.5] (default 0.1)\n"
    "  --truth PATH|none       ground-truth CSV (default: <stream without .bp>_truth.csv)\n"
    "  --steering STREAM       poll this intransit steering stream once per step\n"
    "  --steering-xml FILE     ADIOS2 XML with the IO 'Steering' (e.g. SST); default: that IO\n"
    "                          in --xml if it defines one, else a BP5 file stream\n"
    "  --steering-timeout-ms MS  bound on one steering poll (default 50)\n"
    "  --checkpoint-dir DIR    where checkpoint commands write (default: the stream's folder)\n"
    "  --sleep-ms MS           sleep this long after each step (pacing; default 0)\n";

long long ParseInt(const std::string &flag, const std::string &text, long long lo, long long hi)
{
    std::size_t pos = 0;
    long long v = 0;
    try
    {
        v = std::stoll(text, &pos, 10);
    }
    catch (const std::exception &)
    {
        throw UsageError(flag + ": expected an integer, got '" + text + "'");
    }
    if (pos != text.size())
    {
        throw UsageError(flag + ": expected an integer, got '" + text + "'");
    }
    if (v < lo || v > hi)
    {
        throw UsageError(flag + " " + text + " out of range: must be " + std::to_string(lo) +
                         ".." + std::to_string(hi));
    }
    return v;
}

double ParseDouble(const std::string &flag, const std::string &text)
{
    std::size_t pos = 0;
    double v = 0;
    try
    {
        v = std::stod(text, &pos);
    }
    catch (const std::exception &)
    {
        throw UsageError(flag + ": expected a number, got '" + text + "'");
    }
    if (pos != text.size() || !std::isfinite(v))
    {
        throw UsageError(flag + ": expected a finite number, got '" + text + "'");
    }
    return v;
}

bool FileExists(const std::string &p)
{
    struct stat st;
    return ::stat(p.c_str(), &st) == 0;
}

bool IsDir(const std::string &p)
{
    struct stat st;
    return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string Dirname(const std::string &p)
{
    std::string s = p;
    while (s.size() > 1 && s.back() == '/')
        s.pop_back();
    const auto slash = s.rfind('/');
    if (slash == std::string::npos)
        return ".";
    return slash == 0 ? "/" : s.substr(0, slash);
}

Args ParseArgs(int argc, char **argv)
{
    Args a;
    for (int i = 1; i < argc; ++i)
    {
        const std::string flag = argv[i];
        if (flag == "-h" || flag == "--help")
        {
            std::cout << kUsage;
            std::exit(0);
        }
        if (i + 1 >= argc)
        {
            throw UsageError(flag.rfind("--", 0) == 0 ? flag + ": missing value"
                                                       : "unexpected argument '" + flag + "'");
        }
        const std::string val = argv[++i];
        if (flag == "--xml")
            a.xml = val;
        else if (flag == "--io")
            a.io = val;
        else if (flag == "--stream")
            a.stream = val;
        else if (flag == "--size")
            a.size = static_cast<int>(ParseInt(flag, val, 16, 4096));
        else if (flag == "--steps")
            a.steps = static_cast<int>(ParseInt(flag, val, 1, 100000000));
        else if (flag == "--seed")
            a.seed = static_cast<uint64_t>(ParseInt(flag, val, 0, INT64_MAX));
        else if (flag == "--spots")
            a.spots = static_cast<int>(ParseInt(flag, val, 0, 64));
        else if (flag == "--blocks")
            a.blocks = static_cast<int>(ParseInt(flag, val, 1, 4096));
        else if (flag == "--dt")
        {
            a.dt = ParseDouble(flag, val);
            if (a.dt < kDtLow || a.dt > kDtHigh)
                throw UsageError("--dt " + val + " out of range: must be in [1e-4, 0.5]");
        }
        else if (flag == "--truth")
            a.truth = val;
        else if (flag == "--steering")
            a.steering = val;
        else if (flag == "--steering-xml")
            a.steeringXml = val;
        else if (flag == "--steering-timeout-ms")
            a.steeringTimeoutMs = static_cast<int>(ParseInt(flag, val, 0, 600000));
        else if (flag == "--checkpoint-dir")
            a.checkpointDir = val;
        else if (flag == "--sleep-ms")
            a.sleepMs = static_cast<int>(ParseInt(flag, val, 0, 600000));
        else
            throw UsageError("unknown option '" + flag + "'");
    }
    if (a.xml.empty())
        throw UsageError("--xml is required (e.g. examples/cpp/adios2.xml)");
    if (!FileExists(a.xml))
        throw UsageError("--xml " + a.xml + ": no such file");
    if (a.stream.empty())
        throw UsageError("--stream: empty name");
    if (a.steering.empty() == false && a.steering == a.stream)
        throw UsageError("--steering must differ from --stream");
    if (!a.steeringXml.empty() && !FileExists(a.steeringXml))
        throw UsageError("--steering-xml " + a.steeringXml + ": no such file");
    if (!a.steeringXml.empty() && a.steering.empty())
        throw UsageError("--steering-xml needs --steering STREAM");
    if (a.spots > 0)
    {
        const double w = std::max(2.5, a.size / 40.0);
        const int maxSpots = std::max(1, static_cast<int>(a.size / (6.0 * 1.15 * w)));
        if (a.spots > maxSpots)
            throw UsageError("--spots " + std::to_string(a.spots) + " too many for a " +
                             std::to_string(a.size) + "^2 grid: at most " +
                             std::to_string(maxSpots));
    }
    if (a.truth.empty())
    {
        std::string base = a.stream;
        while (base.size() > 1 && base.back() == '/')
            base.pop_back();
        if (base.size() > 3 && base.compare(base.size() - 3, 3, ".bp") == 0)
            base.resize(base.size() - 3);
        a.truth = base + "_truth.csv";
    }
    if (a.truth != "none" && IsDir(a.truth))
        throw UsageError("--truth " + a.truth + " is a directory");
    if (a.checkpointDir.empty())
        a.checkpointDir = Dirname(a.stream);
    return a;
}

// Portable deterministic uniform numbers (std:: distributions differ between libraries).
struct Rng
{
    uint64_t s;
    explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ULL + 0x632BE59BD9B4E5ULL) {}
    uint64_t Next() // splitmix64
    {
        uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    double Uniform(double lo, double hi)
    {
        return lo + (hi - lo) * static_cast<double>(Next() >> 11) * 0x1.0p-53;
    }
};

struct Spot
{
    double y0, x0, vy, vx, amp, width;
};

double Wrap(double v, double n)
{
    double r = std::fmod(v, n);
    return r < 0 ? r + n : r;
}

class HeatModel
{
public:
    HeatModel(int n, int nSpots, uint64_t seed) : m_N(n), m_T(std::size_t(n) * n), m_Tmp(m_T.size()),
                                                  m_Amb(m_T.size())
    {
        Rng rng(seed);
        const double wMean = std::max(2.5, n / 40.0);
        const double lane = nSpots > 0 ? double(n) / nSpots : double(n);
        const double yOff = rng.Uniform(0.0, lane);
        for (int k = 0; k < nSpots; ++k)
        {
            Spot s;
            s.y0 = Wrap(yOff + (k + 0.5) * lane + rng.Uniform(-0.1, 0.1) * lane, n);
            s.x0 = rng.Uniform(0.0, n);
            s.vy = kUy + rng.Uniform(-0.03, 0.03);
            s.vx = kUx + rng.Uniform(-0.1, 0.1);
            s.amp = 5.0 * rng.Uniform(0.8, 1.2);
            s.width = wMean * rng.Uniform(0.85, 1.15);
            m_Spots.push_back(s);
        }
        // ambient: three low modes with random phases
        std::array<std::array<int, 2>, 3> modes{{{1, 0}, {0, 2}, {1, 1}}};
        std::array<double, 3> phase{};
        for (auto &p : phase)
            p = rng.Uniform(0.0, 2 * kPi);
        for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j)
            {
                double v = 0;
                for (int m = 0; m < 3; ++m)
                    v += std::cos(2 * kPi * (modes[m][0] * double(i) / n + modes[m][1] * double(j) / n) +
                                  phase[m]);
                m_Amb[Idx(i, j)] = 0.3 / 1.5 * v;
            }
        m_T = m_Amb;
        m_Time = -kWarmup;
        const double warmDt = 0.1;
        const int warmSteps = static_cast<int>(std::lround(kWarmup / warmDt));
        for (int s = 0; s < warmSteps; ++s)
            Substep(warmDt);
        m_Time = 0.0;
    }

    int N() const { return m_N; }
    double Time() const { return m_Time; }
    const std::vector<double> &Field() const { return m_T; }
    const std::vector<Spot> &Spots() const { return m_Spots; }

    // Source position (row, column) at the current time, wrapped into [0, n).
    std::pair<double, double> Position(const Spot &s) const
    {
        return {Wrap(s.y0 + s.vy * m_Time, m_N), Wrap(s.x0 + s.vx * m_Time, m_N)};
    }

    // Bilinear interpolation on the periodic grid.
    double Sample(double y, double x) const
    {
        const int i0 = static_cast<int>(std::floor(y)), j0 = static_cast<int>(std::floor(x));
        const double fy = y - i0, fx = x - j0;
        auto at = [&](int i, int j) { return m_T[Idx(Mod(i), Mod(j))]; };
        return (1 - fy) * ((1 - fx) * at(i0, j0) + fx * at(i0, j0 + 1)) +
               fy * ((1 - fx) * at(i0 + 1, j0) + fx * at(i0 + 1, j0 + 1));
    }

    void Advance(double dt)
    {
        for (int s = 0; s < kSubsteps; ++s)
            Substep(dt);
    }

    bool Finite() const
    {
        return std::all_of(m_T.begin(), m_T.end(), [](double v) { return std::isfinite(v); });
    }

private:
    int m_N;
    std::vector<double> m_T, m_Tmp, m_Amb;
    std::vector<Spot> m_Spots;
    double m_Time = 0;

    std::size_t Idx(int i, int j) const { return std::size_t(i) * m_N + j; }
    int Mod(int i) const { return ((i % m_N) + m_N) % m_N; }

    void Substep(double dt)
    {
        const int n = m_N;
        const std::vector<double> &T = m_T;
        for (int i = 0; i < n; ++i)
        {
            const int im = i == 0 ? n - 1 : i - 1, ip = i == n - 1 ? 0 : i + 1;
            for (int j = 0; j < n; ++j)
            {
                const int jm = j == 0 ? n - 1 : j - 1, jp = j == n - 1 ? 0 : j + 1;
                const double c = T[Idx(i, j)];
                const double dy = kUy >= 0 ? c - T[Idx(im, j)] : T[Idx(ip, j)] - c;
                const double dx = kUx >= 0 ? c - T[Idx(i, jm)] : T[Idx(i, jp)] - c;
                const double lap = T[Idx(im, j)] + T[Idx(ip, j)] + T[Idx(i, jm)] + T[Idx(i, jp)] - 4 * c;
                m_Tmp[Idx(i, j)] =
                    c + dt * (-kUy * dy - kUx * dx + kKappa * lap - kLambda * (c - m_Amb[Idx(i, j)]));
            }
        }
        // sources at the start of the substep, each on its local window
        for (const Spot &s : m_Spots)
        {
            const auto [py, px] = Position(s);
            const int r = static_cast<int>(std::ceil(4 * s.width));
            const int ic = static_cast<int>(std::floor(py)), jc = static_cast<int>(std::floor(px));
            const double inv = 1.0 / (s.width * s.width);
            for (int di = -r; di <= r + 1; ++di)
            {
                const double ddy = (ic + di) - py;
                const int ii = Mod(ic + di);
                for (int dj = -r; dj <= r + 1; ++dj)
                {
                    const double ddx = (jc + dj) - px;
                    m_Tmp[Idx(ii, Mod(jc + dj))] += dt * s.amp * std::exp(-(ddy * ddy + ddx * ddx) * inv);
                }
            }
        }
        m_T.swap(m_Tmp);
        m_Time += dt;
    }
};

std::pair<int, int> FactorBlocks(int n)
{
    int px = static_cast<int>(std::sqrt(double(n)));
    while (px > 1 && n % px)
        --px;
    return {n / px, px};
}

std::vector<std::pair<std::size_t, std::size_t>> Split(std::size_t n, int parts)
{
    std::vector<std::pair<std::size_t, std::size_t>> out;
    std::size_t start = 0, base = n / parts, extra = n % parts;
    for (int i = 0; i < parts; ++i)
    {
        const std::size_t count = base + (std::size_t(i) < extra ? 1 : 0);
        out.emplace_back(start, count);
        start += count;
    }
    return out;
}

void Log(const std::string &msg) { std::cerr << "heat_sim: " << msg << std::endl; }

std::string Fmt(double v, int prec = 6)
{
    std::ostringstream s;
    s << std::setprecision(prec) << v;
    return s.str();
}

int Run(const Args &a)
{
    // ADIOS2 2.12 reads $HOME/.config/adios2 and crashes (SIGSEGV in the ADIOS constructor)
    // when HOME is unset, e.g. under `env -i` or some batch systems.
    if (std::getenv("HOME") == nullptr)
        ::setenv("HOME", "/nonexistent", 0);
    std::optional<adios2::ADIOS> adios;
    try
    {
        adios.emplace(a.xml);
    }
    catch (const std::exception &e)
    {
        Log("error: --xml " + a.xml + ": " + e.what());
        return 2;
    }
    adios2::IO io = adios->DeclareIO(a.io);
    if (!io.InConfigFile())
    {
        Log("error: --io '" + a.io + "' is not defined in " + a.xml);
        return 2;
    }
    std::string engineType = io.EngineType();
    std::string lower = engineType;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    const bool isSst = lower == "sst";
    if (isSst && FileExists(a.stream + ".sst"))
    {
        Log("error: " + a.stream + ".sst exists: another writer is running on this stream, or one "
            "died and left it (remove it if so)");
        return 2;
    }
    if (isSst)
        std::remove((a.stream + ".end.json").c_str()); // an earlier run's end-of-stream report

    const int n = a.size;
    const auto [py, px] = FactorBlocks(a.blocks);
    if (py > n || px > n)
    {
        Log("error: --blocks " + std::to_string(a.blocks) + " has more blocks than cells along an axis");
        return 2;
    }
    const auto rows = Split(n, py), cols = Split(n, px);

    HeatModel model(n, a.spots, a.seed);
    double dt = a.dt;
    int sleepMs = a.sleepMs;

    std::ofstream truth;
    if (a.truth != "none")
    {
        truth.open(a.truth, std::ios::out | std::ios::trunc);
        if (!truth)
        {
            Log("error: cannot write --truth " + a.truth);
            return 2;
        }
        truth << "step,blob_id,c0,c1,peak,width\n";
    }

    auto vT = io.DefineVariable<double>("temperature", {std::size_t(n), std::size_t(n)}, {0, 0},
                                        {std::size_t(n), std::size_t(n)});
    auto vDt = io.DefineVariable<double>("dt");
    auto vTime = io.DefineVariable<double>("time");
    auto vStep = io.DefineVariable<int64_t>("step");

    // --- steering -------------------------------------------------------------------------
    bool stopRequested = false;
    intransit::Command stopCmd;
    int currentStep = -1;
    auto checkpoint = [&](const intransit::Command &c) {
        char name[64];
        std::snprintf(name, sizeof name, "/checkpoint_%06d.bp", currentStep);
        const std::string path = a.checkpointDir + name;
        adios2::IO cio = adios->DeclareIO("Checkpoint_" + std::to_string(c.seq));
        cio.SetEngine("BP5");
        auto cT = cio.DefineVariable<double>("temperature", {std::size_t(n), std::size_t(n)}, {0, 0},
                                             {std::size_t(n), std::size_t(n)});
        auto cStep = cio.DefineVariable<int64_t>("step");
        auto cTime = cio.DefineVariable<double>("time");
        auto cDt = cio.DefineVariable<double>("dt");
        adios2::Engine ce = cio.Open(path, adios2::Mode::Write);
        ce.BeginStep();
        ce.Put(cT, model.Field().data(), adios2::Mode::Sync);
        const int64_t st = currentStep;
        const double t = model.Time();
        ce.Put(cStep, st, adios2::Mode::Sync);
        ce.Put(cTime, t, adios2::Mode::Sync);
        ce.Put(cDt, dt, adios2::Mode::Sync);
        ce.EndStep();
        ce.Close();
        Log("checkpoint of step " + std::to_string(currentStep) + " written to " + path + " (seq " +
            std::to_string(c.seq) + ", answers step " + std::to_string(c.answers_step) + ", rule '" +
            c.rule + "')");
    };
    std::optional<intransit::SteeringClient> steer;
    if (!a.steering.empty())
    {
        if (a.steeringXml.empty())
            steer.emplace(*adios, a.steering, a.steeringTimeoutMs);
        else
            steer.emplace(a.steering, a.steeringTimeoutMs, intransit::SteeringClient::DefaultIO, a.steeringXml);
        steer->onStop([&](const intransit::Command &c) {
            stopRequested = true;
            stopCmd = c;
        });
        steer->onCheckpoint([&](const intransit::Command &c) {
            try
            {
                checkpoint(c);
            }
            catch (const std::exception &e)
            {
                Log(std::string("checkpoint failed: ") + e.what() + "; the run goes on");
            }
        });
        steer->declareDouble("dt", kDtLow, kDtHigh, [&](double v) { dt = v; });
        steer->declareInt64("sleep_ms", 0, 10000, [&](int64_t v) { sleepMs = static_cast<int>(v); });
    }

    Log("opening " + engineType + " stream '" + a.stream + "' (io '" + a.io + "', xml " + a.xml + "), " +
        std::to_string(n) + "x" + std::to_string(n) + ", " + std::to_string(a.blocks) + " blocks " +
        std::to_string(py) + "x" + std::to_string(px) + ", " + std::to_string(a.spots) + " spots, seed " +
        std::to_string(a.seed));
    adios2::Engine engine;
    try
    {
        engine = io.Open(a.stream, adios2::Mode::Write);
    }
    catch (const std::exception &e)
    {
        Log(std::string("error: cannot open the output stream: ") + e.what());
        return 1;
    }

    int written = 0;
    int stoppedAt = -1;
    int rc = 0;
    std::vector<double> buf;
    const auto t0 = std::chrono::steady_clock::now();
    for (int step = 0; step < a.steps; ++step)
    {
        if (g_Signal)
            break;
        currentStep = step;
        if (engine.BeginStep() != adios2::StepStatus::OK)
        {
            Log("error: BeginStep failed at step " + std::to_string(step));
            rc = 1;
            break;
        }
        const auto &T = model.Field();
        for (const auto &[y0, cy] : rows)
            for (const auto &[x0, cx] : cols)
            {
                buf.resize(cy * cx);
                for (std::size_t i = 0; i < cy; ++i)
                    std::copy_n(&T[(y0 + i) * n + x0], cx, &buf[i * cx]);
                vT.SetSelection({{y0, x0}, {cy, cx}});
                engine.Put(vT, buf.data(), adios2::Mode::Sync);
            }
        const double t = model.Time();
        const int64_t st = step;
        engine.Put(vDt, dt, adios2::Mode::Sync);
        engine.Put(vTime, t, adios2::Mode::Sync);
        engine.Put(vStep, st, adios2::Mode::Sync);
        engine.EndStep();
        ++written;
        if (truth.is_open())
        {
            for (std::size_t k = 0; k < model.Spots().size(); ++k)
            {
                const Spot &s = model.Spots()[k];
                const auto [cy, cx] = model.Position(s);
                truth << step << ',' << k << ',' << std::fixed << std::setprecision(4) << cy << ',' << cx
                      << ',' << std::defaultfloat << std::setprecision(6) << model.Sample(cy, cx) << ','
                      << std::fixed << std::setprecision(4) << s.width << std::defaultfloat << '\n';
            }
            truth.flush();
        }
        if (steer)
        {
            steer->poll(step);
        }
        if (stopRequested)
        {
            stoppedAt = step;
            Log("stopped by steering after step " + std::to_string(step) + " (seq " +
                std::to_string(stopCmd.seq) + ", answers step " + std::to_string(stopCmd.answers_step) +
                ", rule '" + stopCmd.rule + "')");
            break;
        }
        if (step + 1 < a.steps)
        {
            model.Advance(dt);
            if (!model.Finite())
            {
                Log("error: the field is not finite after step " + std::to_string(step) + " (dt " + Fmt(dt) + ")");
                rc = 4;
                break;
            }
            if (sleepMs > 0)
                std::this_thread::sleep_for(std::chrono::milliseconds(sleepMs));
        }
    }
    if (isSst) // before Close: the analytics count a keep-pace writer's dropped tail exactly
        intransit::report_end_of_stream(a.stream, written);
    engine.Close();
    if (steer)
        steer->close();
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Log("wrote " + std::to_string(written) + " steps (" + engineType + " '" + a.stream + "') in " + Fmt(secs, 3) +
        " s" + (g_Signal ? std::string(", interrupted by signal ") + std::to_string(g_Signal) : std::string()));

    const intransit::SteeringStats none{};
    const intransit::SteeringStats &ss = steer ? steer->stats() : none;
    std::cout << "heat_sim: steps=" << written << " stopped_at=" << stoppedAt << " applied=" << ss.applied
              << " rejected=" << ss.rejected << " replayed=" << ss.replayed << " received=" << ss.received
              << " dt=" << Fmt(dt, 17) << std::endl;
    if (g_Signal)
        return 128 + g_Signal;
    return rc;
}

} // namespace

int main(int argc, char **argv)
{
    Args a;
    try
    {
        a = ParseArgs(argc, argv);
    }
    catch (const UsageError &e)
    {
        std::cerr << "heat_sim: error: " << e.what() << "\n" << kUsage;
        return 2;
    }
    std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
    try
    {
        return Run(a);
    }
    catch (const std::exception &e)
    {
        Log(std::string("error: ") + e.what());
        return 1;
    }
}
