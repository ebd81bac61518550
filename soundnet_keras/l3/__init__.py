"""L³-Net (Arandjelović & Zisserman, "Look, Listen and Learn", ICCV 2017): audio-visual correspondence (AVC)."""
