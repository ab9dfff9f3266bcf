/* Class colours: ten distinct hues, then darker and lighter shades of them for more classes,
 * and a light grey for unlabelled points. */
#include "dml/viz.h"

static const uint32_t base[10] = {
    0x1f77b4u, /* blue */
    0xff7f0eu, /* orange */
    0x2ca02cu, /* green */
    0xd62728u, /* red */
    0x9467bdu, /* purple */
    0x8c564bu, /* brown */
    0xe377c2u, /* pink */
    0x17becfu, /* cyan */
    0xbcbd22u, /* olive */
    0x393b79u, /* indigo */
};

/* Shade s of a colour: 0 itself, then alternately darker and lighter, further each round. */
static uint32_t shade(uint32_t rgb, int s) {
  static const double mix[6] = {0.0, -0.35, 0.4, -0.6, 0.65, -0.2};
  const double t = mix[s % 6];
  uint32_t out = 0;
  for (int ch = 2; ch >= 0; ch--) {
    double v = (double)((rgb >> (8 * ch)) & 0xffu);
    v = t < 0 ? v * (1.0 + t) : v + (255.0 - v) * t;
    out = (out << 8) | (uint32_t)(v + 0.5);
  }
  return out;
}

uint32_t dml_viz_class_colour(int32_t label) {
  if (label < 0) return 0xbdbdbdu;
  return shade(base[label % 10], (int)((label / 10) % 6));
}
