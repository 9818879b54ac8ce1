// Reflect padding of a channels-last feature map (PyTorch's F.pad(mode="reflect"), ONNX Pad mode="reflect"):
// an output pixel outside the input takes the input pixel mirrored about the edge, the edge itself not repeated.
// The SCFF convolutional layers pad their standardised input this way before each convolution (SCFF
// Appendix D, the authors' release); hls4ml's own padding layers pad with zeros only.
#ifndef NNET_REFLECT_PADDING_H_
#define NNET_REFLECT_PADDING_H_

#include "nnet_padding.h"

namespace nnet {

inline int reflected_index(int position, int size) {
    if (position < 0)
        position = -position;
    if (position >= size)
        position = 2 * (size - 1) - position;
    return position;
}

template <class data_T, class res_T, typename CONFIG_T>
void reflectpad2d_cl(data_T data[CONFIG_T::n_chan * CONFIG_T::in_height * CONFIG_T::in_width],
                     res_T res[CONFIG_T::n_chan * CONFIG_T::out_height * CONFIG_T::out_width]) {
    #pragma HLS PIPELINE
ReflectRows:
    for (int i = 0; i < (int)CONFIG_T::out_height; i++) {
        const int row = reflected_index(i - (int)CONFIG_T::pad_top, CONFIG_T::in_height);
    ReflectColumns:
        for (int j = 0; j < (int)CONFIG_T::out_width; j++) {
            const int column = reflected_index(j - (int)CONFIG_T::pad_left, CONFIG_T::in_width);
        ReflectChannels:
            for (int k = 0; k < (int)CONFIG_T::n_chan; k++) {
                res[(i * CONFIG_T::out_width + j) * CONFIG_T::n_chan + k] =
                    (res_T)data[(row * CONFIG_T::in_width + column) * CONFIG_T::n_chan + k];
            }
        }
    }
}

} // namespace nnet

#endif
